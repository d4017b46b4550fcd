//! watch: standing questions and ad-hoc asks, answered by one inference
//! worker that owns the LM.
//!
//! Public face: [`Watch`] (start it with a [`WatchSetup`], `ask`, reload
//! questions, read its shared state), the rule engine [`Rules`] and the
//! change gate [`Gate`] (over [`crate::ring::Thumbnail`]s), both pure and tested on their own.

mod ask;
mod broadcast;
mod clip;
mod error;
mod gate;
mod rules;
mod scope;
mod standing;
mod stats;
mod worker;

pub use ask::{Answer, MAX_COUNT, answer, candidates, example_text, query_text};
pub use broadcast::{Broadcast, Subscription};
pub use error::{AskError, ClipError, ExampleError, TickError, WatchError};
pub use gate::Gate;
pub use rules::{AlertState, Rules, Transition};
pub use scope::outside_training;
pub use standing::{QuestionStatus, answer_type};
pub use stats::{WORKER_METRICS, WorkerStats};
pub use worker::{ASK_QUEUE, AskRequest, AskResponse, Rings, Watch, WatchSetup, WatchShared};
