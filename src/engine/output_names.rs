//! The file names of a model's outputs in `out/<target>/outputs/Result_<N>/` and
//! `reference/Result_<N>/` (and of every tensor in `debug/Result_<N>/`): the SDK's sanitized names (`x.1` -> `x_1.raw`), made distinct when
//! sanitizing maps several outputs to one name (`a/b`, `a.b`, `a_b`, `a-b`) or to names that
//! differ only in case (one file on macOS and Windows). `output_names.json` lists the mapping.
//!
//! The names depend only on the output names, so they are the same on every machine and run.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::quant::aimet::sanitize_name;

/// The longest file stem written: file systems allow 255 bytes, and `.raw` plus a collision
/// suffix must fit. Longer stems keep their start and end with a digest of the full name.
const MAX_STEM: usize = 200;

/// One file stem per output, in the outputs' order. A name whose sanitized form no other output
/// shares (ignoring case) keeps it; within a group that shares one, an output whose name needs no
/// sanitizing keeps the plain form, and the others, in graph order, take the first free
/// `<stem>_2`, `<stem>_3`, ...
pub fn output_file_stems(names: &[String]) -> Vec<String> {
    let sanitized: Vec<String> = names.iter().map(|name| bounded(name, sanitize_name(name))).collect();
    let folded = |stem: &str| stem.to_ascii_lowercase();
    let mut group_size: HashMap<String, usize> = HashMap::new();
    for stem in &sanitized {
        *group_size.entry(folded(stem)).or_default() += 1;
    }
    let mut taken: HashSet<String> = HashSet::new();
    let mut stems: Vec<Option<String>> = vec![None; names.len()];
    for (i, stem) in sanitized.iter().enumerate() {
        if group_size[&folded(stem)] == 1 {
            taken.insert(folded(stem));
            stems[i] = Some(stem.clone());
        }
    }
    let mut colliding: Vec<usize> = (0..names.len()).filter(|&i| stems[i].is_none()).collect();
    colliding.sort_by_key(|&i| (names[i] != sanitized[i], i));
    for i in colliding {
        let base = &sanitized[i];
        let mut candidate = base.clone();
        let mut k = 1;
        while taken.contains(&folded(&candidate)) {
            k += 1;
            candidate = format!("{base}_{k}");
        }
        taken.insert(folded(&candidate));
        stems[i] = Some(candidate);
    }
    stems.into_iter().map(|stem| stem.expect("every output has a stem")).collect()
}

/// `stem`, or when it is longer than [`MAX_STEM`], its start and a digest of `name`.
fn bounded(name: &str, stem: String) -> String {
    if stem.len() <= MAX_STEM {
        return stem;
    }
    // Sanitized stems are ASCII, so any byte index is a character boundary.
    let digest = blake3::hash(name.as_bytes()).to_hex();
    format!("{}_{}", &stem[..MAX_STEM - 17], &digest[..16])
}

/// `out/<target>/output_names.json`: every output's name and its file name, in graph order.
#[derive(Serialize)]
struct NameMap<'a> {
    outputs: Vec<Entry<'a>>,
}

#[derive(Serialize)]
struct Entry<'a> {
    name: &'a str,
    file: String,
}

/// The text of `output_names.json` for `names` and their `stems`.
pub fn name_map_json(names: &[String], stems: &[String]) -> String {
    let outputs = entries(names, stems);
    let mut json = serde_json::to_string_pretty(&NameMap { outputs }).expect("names always serialize");
    json.push('\n');
    json
}

/// `out/<target>/debug/tensor_names.json`: every dumped tensor's name and file name, in
/// program order.
#[derive(Serialize)]
struct TensorMap<'a> {
    tensors: Vec<Entry<'a>>,
}

/// The text of `debug/tensor_names.json` for `names` and their `stems`.
pub fn tensor_map_json(names: &[String], stems: &[String]) -> String {
    let tensors = entries(names, stems);
    let mut json = serde_json::to_string_pretty(&TensorMap { tensors }).expect("names always serialize");
    json.push('\n');
    json
}

fn entries<'a>(names: &'a [String], stems: &[String]) -> Vec<Entry<'a>> {
    names.iter().zip(stems).map(|(name, stem)| Entry { name, file: format!("{stem}.raw") }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stems(names: &[&str]) -> Vec<String> {
        output_file_stems(&names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn distinct_names_keep_the_sdk_sanitized_form() {
        assert_eq!(
            stems(&["logits", "x.1", "130", "/fc/Gemm_output_0"]),
            ["logits", "x_1", "_130", "_fc_Gemm_output_0"]
        );
    }

    #[test]
    fn colliding_names_get_distinct_deterministic_stems() {
        // The unsanitized `a_b` keeps the plain form; the rest follow in graph order.
        assert_eq!(stems(&["a/b", "a.b", "a_b", "a-b"]), ["a_b_2", "a_b_3", "a_b", "a_b_4"]);
        // A suffix never takes a name another output has on its own.
        assert_eq!(stems(&["a.b", "a-b", "a_b_2"]), ["a_b", "a_b_3", "a_b_2"]);
        // Case-insensitive file systems: `Out` and `out` would be one file.
        assert_eq!(stems(&["Out", "out"]), ["Out", "out_2"]);
        let names = ["x.1", "x_1", "x-1", "x 1", "X_1"];
        let all = stems(&names);
        let unique: HashSet<String> = all.iter().map(|s| s.to_ascii_lowercase()).collect();
        assert_eq!(unique.len(), names.len(), "{all:?}");
    }

    #[test]
    fn long_names_fit_a_file_name() {
        let long = "n".repeat(1 << 20);
        let other = format!("{}m", "n".repeat(1 << 20));
        let s = stems(&[&long, &other]);
        assert!(s.iter().all(|stem| stem.len() <= MAX_STEM), "{}", s[0].len());
        assert_ne!(s[0], s[1]);
    }

    #[test]
    fn the_name_map_lists_every_output_in_order() {
        let names: Vec<String> = ["a/b", "a_b"].iter().map(|n| n.to_string()).collect();
        let json: serde_json::Value = serde_json::from_str(&name_map_json(&names, &output_file_stems(&names))).unwrap();
        assert_eq!(json["outputs"][0]["name"], "a/b");
        assert_eq!(json["outputs"][0]["file"], "a_b_2.raw");
        assert_eq!(json["outputs"][1]["file"], "a_b.raw");
    }
}
