//! The screen regions, one type each with a `ui` method: the item list (left), the two
//! responses side by side (centre), the judges and the live run (right), and the metrics and
//! models windows, and the batch-run window.

pub mod batch;
pub mod compare;
pub mod items;
pub mod judges;
pub mod metrics;
pub mod models;
