//! Shape and dtype inference for every op of the IR.
