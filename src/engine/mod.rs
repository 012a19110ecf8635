//! The salsa database, the stage queries, the on-disk store and the watch loop.
