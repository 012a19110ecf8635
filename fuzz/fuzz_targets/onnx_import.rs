//! ONNX import: any bytes given as `model.onnx` either import into a valid graph (which the
//! optimizer then takes) or give import errors; never a panic, an abort or a hang.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(model) = qairt::onnx::decode_model(bytes) else { return };
    // The engine reads these files next to the model; the fuzzer has none, so every external
    // tensor must be reported missing, not read out of bounds.
    let _ = qairt::onnx::external_data_files(&model);
    let Ok(graph) = qairt::onnx::import(&model, &BTreeMap::new(), &BTreeMap::new()) else { return };
    graph.validate().expect("import returns only valid graphs");
    let _ = qairt::passes::optimize(graph);
});
