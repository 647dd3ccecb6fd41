//! How the mock's own views and errors become the typed views and [`Error`] a handle
//! gives.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::error::Error;
use super::views::Warning;
use crate::error::ApiError;
use crate::registry::WaitTimedOut;

pub(super) fn to_value<T: Serialize + ?Sized>(value: &T) -> Value {
    // Everything given here serializes: it was serialized from parsed JSON.
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// A view of the mock's, as its route answers it, read into the typed view.
pub(super) fn typed<T: DeserializeOwned>(view: &impl Serialize) -> Option<T> {
    serde_json::to_value(view)
        .and_then(serde_json::from_value)
        .ok()
}

/// Not reached: every view the mock makes reads back into its typed form.
pub(super) fn unreadable(job_id: &str) -> Error {
    Error::Refused {
        status: 500,
        code: "internal_error".to_owned(),
        message: format!("run {job_id} could not be read into its typed view"),
        violations: Vec::new(),
    }
}

impl From<ApiError> for Error {
    fn from(error: ApiError) -> Self {
        Error::Refused {
            status: error.status().as_u16(),
            code: error.code().as_str().to_owned(),
            message: error.to_string(),
            violations: error
                .violations()
                .into_iter()
                .map(|v| Warning {
                    field: v.field.to_string(),
                    message: v.message.to_string(),
                })
                .collect(),
        }
    }
}

impl From<WaitTimedOut> for Error {
    fn from(timed_out: WaitTimedOut) -> Self {
        Error::Timeout {
            job_id: timed_out.job_id.to_string(),
            message: timed_out.to_string(),
            run: timed_out.run.as_ref().and_then(typed).map(Box::new),
        }
    }
}
