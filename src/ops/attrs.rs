//! Typed access to a node's attributes, with errors that name the attribute and the type
//! found. Unknown attribute names are rejected: silently ignoring one could change what the
//! op computes.

use crate::onnx::error::{ImportError, bad_attribute};
use crate::onnx::proto::attribute_proto::AttributeType;
use crate::onnx::proto::{AttributeProto, GraphProto, NodeProto, TensorProto};

pub(crate) struct Attrs<'a> {
    list: &'a [AttributeProto],
}

impl<'a> Attrs<'a> {
    /// Wraps `node`'s attributes, checking every name is in `known` and none repeats.
    pub fn new(node: &'a NodeProto, known: &[&str]) -> Result<Attrs<'a>, ImportError> {
        for (i, a) in node.attribute.iter().enumerate() {
            let name = a.name();
            if !known.contains(&name) {
                let expected = if known.is_empty() { "none".to_string() } else { known.join(", ") };
                return Err(bad_attribute(format!("unknown attribute {name:?} (this op takes: {expected})")));
            }
            if node.attribute[..i].iter().any(|b| b.name() == name) {
                return Err(bad_attribute(format!("attribute {name:?} is given twice")));
            }
        }
        Ok(Attrs { list: &node.attribute })
    }

    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    fn get(&self, name: &str) -> Option<&'a AttributeProto> {
        self.list.iter().find(|a| a.name() == name)
    }

    /// The attribute if present, after checking its declared type. Models from IR version 1
    /// may leave `type` unset; then `present` decides whether the field is there.
    fn typed(
        &self,
        name: &str,
        want: AttributeType,
        present: impl Fn(&AttributeProto) -> bool,
    ) -> Result<Option<&'a AttributeProto>, ImportError> {
        let Some(a) = self.get(name) else { return Ok(None) };
        let declared = a.r#type();
        if declared == want || (declared == AttributeType::Undefined && present(a)) {
            Ok(Some(a))
        } else {
            Err(bad_attribute(format!(
                "attribute {name:?} is {}, expected {}",
                declared.as_str_name(),
                want.as_str_name()
            )))
        }
    }

    pub fn int(&self, name: &str) -> Result<Option<i64>, ImportError> {
        Ok(self.typed(name, AttributeType::Int, |a| a.i.is_some())?.map(|a| a.i()))
    }

    pub fn int_or(&self, name: &str, default: i64) -> Result<i64, ImportError> {
        Ok(self.int(name)?.unwrap_or(default))
    }

    /// A 0/1 flag.
    pub fn flag(&self, name: &str) -> Result<bool, ImportError> {
        match self.int_or(name, 0)? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(bad_attribute(format!("attribute {name:?} must be 0 or 1, got {v}"))),
        }
    }

    /// A 0/1 flag with a default.
    pub fn flag_or(&self, name: &str, default: bool) -> Result<bool, ImportError> {
        if self.has(name) { self.flag(name) } else { Ok(default) }
    }

    pub fn ints(&self, name: &str) -> Result<Option<Vec<i64>>, ImportError> {
        Ok(self.typed(name, AttributeType::Ints, |a| !a.ints.is_empty())?.map(|a| a.ints.clone()))
    }

    pub fn float(&self, name: &str) -> Result<Option<f32>, ImportError> {
        Ok(self.typed(name, AttributeType::Float, |a| a.f.is_some())?.map(|a| a.f()))
    }

    pub fn float_or(&self, name: &str, default: f32) -> Result<f32, ImportError> {
        Ok(self.float(name)?.unwrap_or(default))
    }

    pub fn floats(&self, name: &str) -> Result<Option<Vec<f32>>, ImportError> {
        Ok(self.typed(name, AttributeType::Floats, |a| !a.floats.is_empty())?.map(|a| a.floats.clone()))
    }

    pub fn string(&self, name: &str) -> Result<Option<String>, ImportError> {
        let Some(a) = self.typed(name, AttributeType::String, |a| a.s.is_some())? else {
            return Ok(None);
        };
        String::from_utf8(a.s().to_vec())
            .map(Some)
            .map_err(|_| bad_attribute(format!("attribute {name:?} is not valid UTF-8")))
    }

    pub fn tensor(&self, name: &str) -> Result<Option<&'a TensorProto>, ImportError> {
        Ok(self.typed(name, AttributeType::Tensor, |a| a.t.is_some())?.and_then(|a| a.t.as_ref()))
    }

    /// A subgraph (an If's branch).
    pub fn graph(&self, name: &str) -> Result<Option<&'a GraphProto>, ImportError> {
        Ok(self.typed(name, AttributeType::Graph, |a| a.g.is_some())?.and_then(|a| a.g.as_ref()))
    }

    /// Names of the attributes present, in model order.
    pub fn names(&self) -> impl Iterator<Item = &'a str> {
        self.list.iter().map(|a| a.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::export::attr_int as int_attr;

    fn node(attrs: Vec<AttributeProto>) -> NodeProto {
        NodeProto { attribute: attrs, ..Default::default() }
    }

    #[test]
    fn typed_access_checks_the_declared_type() {
        let n = node(vec![int_attr("group", 2)]);
        let attrs = Attrs::new(&n, &["group", "pads"]).unwrap();
        assert_eq!(attrs.int("group").unwrap(), Some(2));
        assert_eq!(attrs.int_or("missing", 7).unwrap(), 7);
        let err = attrs.ints("group").unwrap_err();
        assert_eq!(err.message, "attribute \"group\" is INT, expected INTS");
    }

    #[test]
    fn unknown_and_repeated_names_are_rejected() {
        let n = node(vec![int_attr("grup", 2)]);
        let err = Attrs::new(&n, &["group"]).err().unwrap();
        assert!(err.message.contains("unknown attribute \"grup\""), "{}", err.message);
        let n = node(vec![int_attr("group", 1), int_attr("group", 2)]);
        assert!(Attrs::new(&n, &["group"]).is_err());
    }

    #[test]
    fn untyped_attributes_from_old_models_are_read_by_field() {
        let a = AttributeProto { name: Some("axis".into()), i: Some(-1), ..Default::default() };
        let n = node(vec![a]);
        assert_eq!(Attrs::new(&n, &["axis"]).unwrap().int("axis").unwrap(), Some(-1));
        let n = node(vec![int_attr("flag", 2)]);
        assert!(Attrs::new(&n, &["flag"]).unwrap().flag("flag").is_err());
    }
}
