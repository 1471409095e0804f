//! Progress reporting from long operations to whoever shows it (terminal, PR comment).

/// One step of a long operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProgressEvent {
    /// A named stage started (e.g. "compiling", "building images", "canary").
    Stage(String),
    /// Something worth showing inside the current stage.
    Message(String),
    /// A warning that does not stop the operation.
    Warning(String),
    /// A pipeline task changed state (for live DAG views).
    Task {
        /// Path of the task in the DAG, e.g. `for-loop-2/iteration-0/square`.
        path: String,
        /// The task's display name.
        name: String,
        /// Its new state.
        state: crate::pipeline::RunState,
        /// Why it failed or was skipped, if it did.
        detail: Option<String>,
    },
    /// A line of output from a child process or remote log (build log, task log).
    Log {
        /// What the line belongs to (an image name, a task name).
        source: String,
        /// The line, without trailing newline.
        line: String,
    },
}

/// Receives [`ProgressEvent`]s. Implementations must be cheap and must not fail.
pub trait Progress: Send + Sync {
    /// Called for every event, in order.
    fn event(&self, event: ProgressEvent);
}

/// A [`Progress`] that discards everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn event(&self, _event: ProgressEvent) {}
}
