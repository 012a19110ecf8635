//! The `ai.onnx` ops qairt leaves out by design, and why: the importer gives the reason as the
//! hint of the "unsupported op" diagnostic, so a user learns it is not an omission to wait for.

/// Why `op_type` (of the default domain) stays out, if it does by design: a noun phrase that
/// reads after "<op> is". If is the one registered op listed: the phrase says when it stays out.
pub fn stays_out(op_type: &str) -> Option<&'static str> {
    Some(match op_type {
        "NegativeLogLikelihoodLoss" | "SoftmaxCrossEntropyLoss" => {
            "a training loss: qairt imports inference graphs (export the model without its loss)"
        }
        "Gradient" | "Adagrad" | "Adam" | "Momentum" => {
            "a training operator (gradient or optimizer update): qairt imports inference graphs"
        }
        "RandomUniform" | "RandomUniformLike" | "RandomNormal" | "RandomNormalLike" | "Bernoulli" | "Multinomial" => {
            "a random op: its output is not a function of the inputs, so a quantized build cannot be verified against \
             a reference (replace it with its inference-time value, or feed the noise as an input)"
        }
        // If is registered (`ops::control`): only an If whose condition is known at import is
        // imported, as the branch it takes; this is why one with a run-time condition is not.
        "If" => {
            "control flow when its condition is computed at run time: qairt compiles straight-line graphs with \
             static shapes, so it imports an If only when its condition is known at import, as the branch it takes \
             (re-export with the branch taken, e.g. torch.onnx.export of a traced model)"
        }
        "Loop" | "Scan" => {
            "control flow: qairt compiles straight-line graphs with static shapes (re-export with the loop \
             unrolled, e.g. torch.onnx.export of a traced model)"
        }
        "SequenceConstruct" | "SequenceEmpty" | "SequenceAt" | "SequenceInsert" | "SequenceErase"
        | "SequenceLength" | "SequenceMap" | "SplitToSequence" | "ConcatFromSequence" => {
            "a sequence op: qairt's graphs carry tensors only, as the SDK's do"
        }
        "Optional" | "OptionalHasElement" | "OptionalGetElement" => {
            "an optional-value op: qairt's graphs carry tensors only, as the SDK's do"
        }
        "StringNormalizer" | "StringConcat" | "StringSplit" | "RegexFullMatch" | "TfIdfVectorizer" => {
            "string processing: qairt carries numeric tensors only (tokenize before the model)"
        }
        "ImageDecoder" => {
            "an image decoder (compressed bytes in): give qairt the decoded image as a raw tensor instead"
        }
        "Unique" | "NonZero" => {
            "an op whose output size depends on the data, and qairt compiles static shapes as the SDK does (keep it \
             out of the deployed graph, or use a fixed-size formulation)"
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excluded_ops_are_not_registered_and_say_why() {
        for op in ["SoftmaxCrossEntropyLoss", "Scan", "RandomUniformLike", "SplitToSequence", "NonZero"] {
            assert!(stays_out(op).is_some(), "{op}");
            assert!(super::super::onnx_op(op).is_none(), "{op} is both registered and excluded");
        }
        assert!(stays_out("Conv").is_none());
    }
}
