//! The per-step profile of a compiled program's run (the SDK's `qnn-profile-viewer` table at
//! `--profiling_level detailed`): for every step in program order its node, op type and
//! outputs, its time over the verify samples, and the bytes it reads and writes.
//!
//! Bytes are counted in each tensor's stored representation (`model.bin`'s: an 8-bit
//! activation is one byte an element, a float32 one four, a constant its stored bytes), every
//! input as often as the step lists it: what the target moves, not what the host emulation
//! does with float32 copies. Times come from [`super::exec::Prepared::run_timed`]; they are
//! not reproducible, so a profile never feeds a cache key or an artifact that must be
//! byte-identical across runs.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::compile::program::{Program, Storage};
use crate::ir::TensorId;

/// The columns of `profile.csv`, in order (and the fields of each step in `profile.json`).
pub const CSV_COLUMNS: [&str; 9] =
    ["step", "node", "op_type", "outputs", "median_us", "mean_us", "bytes_read", "bytes_written", "time_share"];

/// `profile.json`'s `schema`: raised when a field changes meaning or goes away.
pub const SCHEMA: u32 = 1;

/// One step of the program.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepProfile {
    /// The step's index in program order (0-based).
    pub step: usize,
    /// The node's name in the optimized graph.
    pub node: String,
    pub op_type: String,
    /// The tensors the step produces.
    pub outputs: Vec<String>,
    /// Median of the step's time over the samples, in microseconds.
    pub median_us: f64,
    /// Mean of the step's time over the samples, in microseconds.
    pub mean_us: f64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    /// `median_us` over the sum of every step's `median_us` (0 when that sum is 0).
    pub time_share: f64,
}

/// Every step of a program, profiled over `samples` runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub samples: usize,
    pub steps: Vec<StepProfile>,
}

impl Profile {
    /// The profile of `program` from `times[sample][step]` (every sample timed every step;
    /// a sample with fewer times counts only for the steps it has).
    pub fn new(program: &Program, times: &[Vec<Duration>]) -> Profile {
        let stored = |id: &TensorId| -> u64 {
            program.tensor(*id).map_or(0, |t| match &t.storage {
                Storage::Arena { bytes, .. } => *bytes,
                Storage::Constant { data } => data.len() as u64,
                Storage::Unused => 0,
            })
        };
        let mut steps: Vec<StepProfile> = program
            .steps
            .iter()
            .enumerate()
            .map(|(index, step)| {
                let mut micros: Vec<f64> =
                    times.iter().filter_map(|sample| sample.get(index)).map(|d| d.as_secs_f64() * 1e6).collect();
                StepProfile {
                    step: index,
                    node: step.node.clone(),
                    op_type: step.op.type_name().to_string(),
                    outputs: step
                        .outputs
                        .iter()
                        .map(|&id| program.tensor_name(id).unwrap_or_default().to_string())
                        .collect(),
                    median_us: rounded(median(&mut micros)),
                    mean_us: rounded(mean(&micros)),
                    bytes_read: step.inputs.iter().map(stored).sum(),
                    bytes_written: step.outputs.iter().map(stored).sum(),
                    time_share: 0.0,
                }
            })
            .collect();
        let total: f64 = steps.iter().map(|s| s.median_us).sum();
        for step in &mut steps {
            step.time_share = if total > 0.0 { rounded(step.median_us / total) } else { 0.0 };
        }
        Profile { samples: times.len(), steps }
    }

    /// The sum of the steps' median times, in microseconds.
    pub fn total_median_us(&self) -> f64 {
        self.steps.iter().map(|s| s.median_us).sum()
    }

    /// The steps by time, slowest first (program order among equal times).
    pub fn slowest(&self) -> Vec<&StepProfile> {
        let mut steps: Vec<&StepProfile> = self.steps.iter().collect();
        steps.sort_by(|a, b| b.median_us.total_cmp(&a.median_us).then(a.step.cmp(&b.step)));
        steps
    }

    /// `profile.csv`: a header of [`CSV_COLUMNS`], then one row per step in program order;
    /// several outputs are joined with `;`.
    pub fn csv(&self) -> String {
        let mut out = CSV_COLUMNS.join(",");
        out.push('\n');
        for s in &self.steps {
            let fields = [
                s.step.to_string(),
                csv_field(&s.node),
                csv_field(&s.op_type),
                csv_field(&s.outputs.join(";")),
                s.median_us.to_string(),
                s.mean_us.to_string(),
                s.bytes_read.to_string(),
                s.bytes_written.to_string(),
                s.time_share.to_string(),
            ];
            out.push_str(&fields.join(","));
            out.push('\n');
        }
        out
    }

    /// `profile.json`: the schema, the target, what the times are, the total and every step.
    pub fn json(&self, target: &str) -> String {
        #[derive(Serialize)]
        struct Document<'a> {
            schema: u32,
            target: &'a str,
            samples: usize,
            /// Says which statistic `time_share` and `total_median_us` are made of.
            statistic: &'static str,
            total_median_us: f64,
            steps: &'a [StepProfile],
        }
        let document = Document {
            schema: SCHEMA,
            target,
            samples: self.samples,
            statistic: "median",
            total_median_us: rounded(self.total_median_us()),
            steps: &self.steps,
        };
        let mut json = serde_json::to_string_pretty(&document).expect("a profile always serializes");
        json.push('\n');
        json
    }
}

/// Nanosecond resolution in microseconds: what `Instant` measures, without float noise digits.
fn rounded(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The middle value (the mean of the two middle ones for an even count); 0 for none.
fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.len() % 2 == 1 { values[middle] } else { (values[middle - 1] + values[middle]) / 2.0 }
}

fn mean(values: &[f64]) -> f64 {
    if values.is_empty() { 0.0 } else { values.iter().sum::<f64>() / values.len() as f64 }
}

/// A CSV field, quoted when it holds a comma, a quote or a line break.
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) { format!("\"{}\"", text.replace('"', "\"\"")) } else { text.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::test_graphs::conv_relu_quantized;
    use crate::compile::{compile, standard_rules};

    fn program() -> Program {
        let (q, _) = conv_relu_quantized();
        compile(&q, standard_rules().get("htp").unwrap()).unwrap()
    }

    fn micros(values: &[u64]) -> Vec<Duration> {
        values.iter().map(|&us| Duration::from_micros(us)).collect()
    }

    #[test]
    fn times_are_medians_and_means_over_samples_and_shares_of_the_median_total() {
        let program = program();
        // Three samples; step 0 has an outlier the median ignores and the mean does not.
        let profile = Profile::new(&program, &[micros(&[10, 5]), micros(&[90, 15]), micros(&[20, 10])]);
        assert_eq!(profile.samples, 3);
        let (conv, relu) = (&profile.steps[0], &profile.steps[1]);
        assert_eq!((conv.median_us, conv.mean_us), (20.0, 40.0));
        assert_eq!((relu.median_us, relu.mean_us), (10.0, 10.0));
        assert_eq!(profile.total_median_us(), 30.0);
        assert_eq!((conv.time_share, relu.time_share), (0.667, 0.333));
        assert_eq!(profile.slowest().iter().map(|s| s.step).collect::<Vec<_>>(), [0, 1]);
        // An even count takes the mean of the middle two.
        let even = Profile::new(&program, &[micros(&[1, 4]), micros(&[3, 4])]);
        assert_eq!(even.steps[0].median_us, 2.0);
        // No time at all: shares are 0, not NaN.
        let none = Profile::new(&program, &[]);
        assert!(none.steps.iter().all(|s| s.median_us == 0.0 && s.time_share == 0.0));
    }

    #[test]
    fn bytes_are_the_stored_sizes_of_each_steps_tensors() {
        let program = program();
        let profile = Profile::new(&program, &[]);
        let size = |name: &str| match &program.tensor(program.find_tensor(name).unwrap()).unwrap().storage {
            Storage::Arena { bytes, .. } => *bytes,
            Storage::Constant { data } => data.len() as u64,
            Storage::Unused => 0,
        };
        // conv_relu_quantized: x (1x1x2x2, 8-bit) -> conv (W, B) -> y (1x2x2x2, 8-bit) -> relu -> z.
        let conv = &profile.steps[0];
        assert_eq!(conv.op_type, "Conv");
        assert_eq!(conv.outputs, ["y"]);
        assert_eq!((size("x"), size("y"), size("z")), (4, 8, 8), "one byte per 8-bit element");
        // W: two 8-bit values; B: two int32 values on the accumulator's grid.
        assert_eq!((size("conv.weight"), size("conv.bias")), (2, 8));
        assert_eq!(conv.bytes_read, 4 + 2 + 8);
        assert_eq!(conv.bytes_written, size("y"));
        let relu = &profile.steps[1];
        assert_eq!((relu.bytes_read, relu.bytes_written), (size("y"), size("z")));
    }

    #[test]
    fn the_csv_has_the_documented_columns_and_one_row_per_step() {
        let program = program();
        let mut profile = Profile::new(&program, &[micros(&[7, 3])]);
        profile.steps[1].node = "relu, \"fused\"".into();
        let csv = profile.csv();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], "step,node,op_type,outputs,median_us,mean_us,bytes_read,bytes_written,time_share");
        assert_eq!(lines.len(), 1 + program.steps.len());
        assert!(lines[1].starts_with("0,"), "{}", lines[1]);
        assert!(lines[2].starts_with("1,\"relu, \"\"fused\"\"\",Relu,z,3,3,8,8,0.3"), "{}", lines[2]);
        let json: serde_json::Value = serde_json::from_str(&profile.json("htp")).unwrap();
        assert_eq!(json["schema"], SCHEMA);
        assert_eq!(json["statistic"], "median");
        assert_eq!(json["total_median_us"], 10.0);
        let mut fields: Vec<&str> = json["steps"][0].as_object().unwrap().keys().map(String::as_str).collect();
        let mut columns = CSV_COLUMNS.to_vec();
        fields.sort_unstable();
        columns.sort_unstable();
        assert_eq!(fields, columns);
    }
}
