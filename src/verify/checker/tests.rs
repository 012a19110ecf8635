//! Tests of the checker: configuration, verdicts, graph walk, and the numpy reference.

use super::*;
