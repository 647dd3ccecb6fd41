//! What is wrong with an update, as the rules and the parser find it and a client is told:
//! a [`Problem`] of some [`ProblemKind`], reported as a [`Violation`]; a [`Warning`] has
//! the same shape. Nothing here judges an update: the parser (`update`) and the rules
//! (`rules`) do, and `error` turns problems into an answer.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// The kinds of problem, in the order that decides an answer's status and `code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProblemKind {
    /// 415: the body is not declared as JSON.
    MediaType,
    /// 422 `validation_failed`: a field is missing or malformed.
    Form,
    /// 409 `invalid_transition`: the transition table forbids the new state.
    Transition,
    /// 409 `conflict`: the update changes what identifies the run.
    Identity,
    /// 422 `validation_failed`: the merged status's times do not add up.
    Timing,
}

impl ProblemKind {
    /// Rules, unlike well-formedness, become warnings under `--validation lenient`.
    pub fn is_rule(self) -> bool {
        matches!(
            self,
            ProblemKind::Transition | ProblemKind::Identity | ProblemKind::Timing
        )
    }
}

/// One problem as a client sees it; a warning has the same shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Violation {
    /// The field, header or parameter at fault, e.g. `state` or `jobConfig.id`.
    #[schema(value_type = String)]
    pub field: Arc<str>,
    #[schema(value_type = String)]
    pub message: Arc<str>,
}

impl Violation {
    pub fn new(field: &str, message: &str) -> Self {
        Violation {
            field: field.into(),
            message: message.into(),
        }
    }
}

pub type Warning = Violation;

/// A problem found in an update: its kind, the violation to report, and, when it differs
/// from the violation's message, the sentence that heads the error if this problem
/// decides the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub kind: ProblemKind,
    pub violation: Violation,
    headline: Option<String>,
}

impl Problem {
    pub fn new(kind: ProblemKind, field: &str, message: String) -> Self {
        Problem {
            kind,
            violation: Violation {
                field: Arc::from(field),
                message: Arc::from(message),
            },
            headline: None,
        }
    }

    pub fn with_headline(mut self, headline: String) -> Self {
        self.headline = Some(headline);
        self
    }

    /// The sentence that heads an error this problem decides.
    pub fn headline(&self) -> &str {
        self.headline.as_deref().unwrap_or(&self.violation.message)
    }
}
