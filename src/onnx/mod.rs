//! ONNX protobuf decoding and import into the IR (no salsa, no file system).
