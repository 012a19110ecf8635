//! Encodings made for a model whose BatchNormalizations qairt folds (AIMET's export when its
//! own BatchNorm folding was skipped: the file names a BatchNorm's output or parameters),
//! applied to the folded model as the SDK's converter applies them: the BatchNorm output's
//! encoding goes to the layer output that now holds its values. Every other encoding the fold
//! invalidates is adjusted or dropped, and one warning per fold says what changed:
//!
//! - the layer's own output had pre-BatchNorm values, which no tensor holds any more: its
//!   encoding is dropped (the BatchNorm output's replaces it, or calibration does);
//! - the BatchNorm's `gamma`, `beta`, `mean` and `var` are gone with it: their encodings too;
//! - per-channel weight encodings are rescaled with the weights: the fold multiplies channel
//!   `c` by `s[c] = gamma / sqrt(var + epsilon)`, and `round(w s / (scale |s|))` is
//!   `±round(w / scale)` on the same symmetric grid, so the folded layer is quantized as the
//!   unfolded one was; a per-tensor weight encoding cannot follow per-channel factors and is
//!   dropped (calibrated from the folded weights);
//! - the bias changed value (`(b - mean) s + beta`): its encoding is dropped (an int32 bias is
//!   derived from the input and weight scales again).

use super::{OverrideEncoding, OverrideError, OverrideErrorKind as Kind, Overrides, Section};
use crate::ir::{BatchNormFold, Graph};
use crate::quant::encoding::Encoding;

/// `o` as it applies to `graph` after its BatchNorm folds, and for each fold that moved,
/// rescaled or dropped an entry one warning saying what, at the first entry concerned.
pub fn carry_through_folds(o: &Overrides, graph: &Graph) -> (Overrides, Vec<OverrideError>) {
    let mut carried = o.clone();
    let mut notes = Vec::new();
    for fold in graph.batchnorm_folds.iter().filter(|fold| made_for_unfolded(o, fold)) {
        let mut changes = Changes::default();
        carry_activation(&mut carried, fold, &mut changes);
        carry_weight(&mut carried, fold, &mut changes);
        let bias = fold.bias.0.iter();
        for name in fold.parameters.iter().chain(bias) {
            if let Some(at) = remove(&mut carried, name) {
                changes.add(at, format!("\"{name}\" dropped (its values are gone or changed)"));
            }
        }
        if let Some(at) = changes.at {
            notes.push(
                OverrideError::warning(
                    Kind::Folded,
                    at,
                    format!(
                        "BatchNormalization \"{}\" is folded into the layer writing \"{}\", as the SDK's converter \
                         folds it, and the encodings made for the unfolded model follow: {}",
                        fold.node,
                        fold.holds,
                        changes.said.join("; ")
                    ),
                )
                .with_help(
                    "to run the BatchNorms as AIMET's QuantSim of the unfolded model did, with these encodings as \
                     they are, set `batchnorm_folding = false` on this target; or export from AIMET after \
                     batch_norm_fold, which writes encodings for the folded model itself",
                ),
            );
        }
    }
    (carried, notes)
}

/// What one fold did to the entries, and where the first entry it concerned is.
#[derive(Default)]
struct Changes {
    at: Option<super::Span>,
    said: Vec<String>,
}

impl Changes {
    fn add(&mut self, at: super::Span, what: String) {
        self.at.get_or_insert(at);
        self.said.push(what);
    }
}

/// Whether `o` was made for the model before `fold`: it names the BatchNorm's output or one
/// of its parameters. A file made for the folded model (AIMET's `fold_all_batch_norms` keeps
/// the layer's output and weight names, as qairt's fold does) names neither, and its
/// encodings apply as they are.
fn made_for_unfolded(o: &Overrides, fold: &BatchNormFold) -> bool {
    let names = o.by_name();
    (fold.bn_output != fold.holds && names.contains_key(fold.bn_output.as_str()))
        || fold.parameters.iter().any(|p| names.contains_key(p.as_str()))
}

/// The BatchNorm output's encoding to the tensor that holds its values now, replacing the
/// layer output's (pre-BatchNorm) one.
fn carry_activation(o: &mut Overrides, fold: &BatchNormFold, changes: &mut Changes) {
    let moved = (fold.bn_output != fold.holds).then(|| take(o, &fold.bn_output)).flatten();
    if let Some((section, encoding, spans)) = moved {
        changes.add(spans.name, format!("\"{}\" carried to \"{}\"", fold.bn_output, fold.holds));
        if let Some(at) = remove(o, &fold.layer_output) {
            changes.add(at, format!("its pre-BatchNorm encoding of \"{}\" dropped", fold.layer_output));
        }
        o.section_mut(section).insert(fold.holds.clone(), encoding);
        o.source.entries.insert((section, fold.holds.clone()), spans);
    } else if let Some(at) = remove(o, &fold.layer_output) {
        changes
            .add(at, format!("the pre-BatchNorm encoding of \"{}\" dropped (calibrated instead)", fold.layer_output));
    }
}

/// The weight's encodings rescaled per channel with the fold (and renamed if the fold gave the
/// weight another name); dropped where they cannot be.
fn carry_weight(o: &mut Overrides, fold: &BatchNormFold, changes: &mut Changes) {
    let (before, after) = &fold.weight;
    let Some((section, encoding, spans)) = take(o, before) else { return };
    let carried = match encoding {
        OverrideEncoding::Int(channels) if channels.len() == fold.scales.len() && channels.len() > 1 => {
            let rescaled = channels.iter().zip(&fold.scales).map(|(e, &s)| rescale(e, s)).collect();
            changes.add(spans.name, format!("\"{before}\" rescaled per channel by gamma / sqrt(var + epsilon)"));
            Some(OverrideEncoding::Int(rescaled))
        }
        OverrideEncoding::Int(_) | OverrideEncoding::PerBlock { .. } => {
            let what = "cannot follow per-channel factors: calibrated from the folded weights";
            changes.add(spans.name, format!("\"{before}\" dropped ({what})"));
            None
        }
        // A bitwidth or a float type still says what it said.
        other => Some(other),
    };
    if let Some(encoding) = carried {
        o.section_mut(section).insert(after.clone(), encoding);
        o.source.entries.insert((section, after.clone()), spans);
    }
}

/// `e` for weights multiplied by `factor`: the scale times `|factor|` on the same grid.
fn rescale(e: &Encoding, factor: f32) -> Encoding {
    Encoding::from_scale_offset(e.bitwidth, e.scale * factor.abs(), i64::from(e.offset), e.symmetric)
}

/// Removes the entry named `name` from whichever section holds it: its section, encoding and
/// spans.
fn take(o: &mut Overrides, name: &str) -> Option<(Section, OverrideEncoding, super::EntrySpans)> {
    let section = [Section::Activation, Section::Param, Section::Encodings]
        .into_iter()
        .find(|&section| o.section(section).contains_key(name))?;
    let encoding = o.section_mut(section).remove(name)?;
    let spans = o.source.entries.remove(&(section, name.to_string())).unwrap_or_default();
    Some((section, encoding, spans))
}

/// Removes the entry named `name`; where its name was in the file.
fn remove(o: &mut Overrides, name: &str) -> Option<super::Span> {
    take(o, name).map(|(_, _, spans)| spans.name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::aimet::parse_overrides;

    /// The digits model folded by qairt, with the encodings AIMET exported for it unfolded
    /// (examples/digits/aimet/unfolded/) and for it folded (examples/digits/aimet/).
    fn folded_digits() -> Graph {
        let bytes = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/digits/model.onnx")).unwrap();
        let proto = crate::onnx::decode_model(&bytes).unwrap();
        use std::collections::BTreeMap;
        let graph = crate::onnx::import(&proto, &BTreeMap::new(), &BTreeMap::new()).unwrap();
        crate::passes::optimize(graph).unwrap().0
    }

    fn aimet(file: &str) -> Overrides {
        let path = format!("{}/examples/digits/aimet/{file}", env!("CARGO_MANIFEST_DIR"));
        parse_overrides(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    /// AIMET's export of the unfolded model: the BatchNorm outputs' encodings go to the Conv
    /// outputs, the Conv outputs' own ones and gamma's go, the weights' per-channel scales are
    /// multiplied by |s|, and what remains checks against the folded graph. One warning per fold.
    #[test]
    fn an_unfolded_export_follows_the_folds() {
        let graph = folded_digits();
        assert_eq!(graph.batchnorm_folds.len(), 2);
        let fold = &graph.batchnorm_folds[0];
        assert_eq!(
            (fold.bn_output.as_str(), fold.holds.as_str()),
            ("/bn1/BatchNormalization_output_0", "/conv1/Conv_output_0")
        );
        let o = aimet("unfolded/encodings_v1.0.0.json");
        assert!(
            !crate::quant::check_overrides(&o, &graph).is_empty(),
            "the BatchNorm names are not in the folded graph"
        );
        let (carried, notes) = carry_through_folds(&o, &graph);
        assert!(crate::quant::check_overrides(&carried, &graph).is_empty());
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(
            notes[0].message.contains("\"/bn1/BatchNormalization_output_0\" carried to \"/conv1/Conv_output_0\""),
            "{}",
            notes[0].message
        );
        assert_eq!(carried.activations["/conv1/Conv_output_0"], o.activations["/bn1/BatchNormalization_output_0"]);
        assert!(
            !carried.params.contains_key("bn1.weight")
                && !carried.activations.contains_key("/bn1/BatchNormalization_output_0")
        );
        let (OverrideEncoding::Int(before), OverrideEncoding::Int(after)) =
            (&o.params["conv1.weight"], &carried.params["conv1.weight"])
        else {
            panic!("per-channel weights")
        };
        for ((b, a), s) in before.iter().zip(after).zip(&fold.scales) {
            assert_eq!((a.scale, a.offset), (b.scale * s.abs(), b.offset));
        }
    }

    /// AIMET's export of the model it folded itself names no BatchNorm tensor: it applies to
    /// qairt's folded graph as it is (the weights are already folded ones).
    #[test]
    fn a_folded_export_is_left_alone() {
        let graph = folded_digits();
        let o = aimet("encodings_v1.0.0.json");
        let (carried, notes) = carry_through_folds(&o, &graph);
        assert!(notes.is_empty(), "{notes:?}");
        assert_eq!(carried, o);
    }
}
