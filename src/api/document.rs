//! The OpenAPI document's parts that are not a route's own: its title, version and tags,
//! the 503 every change may answer, how it is written out, and a walk over a path's
//! operations for those that add to them (access control, the Spark app routes).

use utoipa::OpenApi;
use utoipa::openapi::path::{Operation, PathItem};

use crate::error::ErrorBody;
use crate::routes;

/// What the document says beyond its routes: the title, the version, the tags.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "job-launcher-mock",
        description = "A stand-in for Lucidworks Fusion's job-launcher API, for tests. \
            Fusion's own routes are tagged `fusion`; everything under `/_mock` is the \
            mock's, for tests to inspect and control it.",
    ),
    tags(
        (name = "fusion", description = "The routes Fusion's job-launcher documents"),
        (name = "mock", description = "The mock's own routes, for tests"),
        (name = "sessions", description = "Worlds of their own on one service: every route \
            again under /sessions/{id}"),
        (name = "service", description = "Health, metrics and this document"),
    ),
    components(schemas(ErrorBody))
)]
struct Base;

/// The start of the document; the routes add their paths and schemas to it.
pub fn base() -> utoipa::openapi::OpenApi {
    Base::openapi()
}

/// The operations of a documented path: the methods the mock routes.
pub fn operations_mut(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
    ]
    .into_iter()
    .flatten()
}

/// Every operation that changes what `--data-dir` keeps may answer 503
/// `storage_unavailable` when the store cannot write: documented once, here, rather than
/// on each handler. The journal is not kept, so emptying it cannot fail that way.
pub fn storage_failures(document: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{Content, Ref, ResponseBuilder};

    let unavailable = ResponseBuilder::new()
        .description(
            "--data-dir cannot be written (a full disk, an I/O error): the change was not made",
        )
        .content(
            "application/json",
            Content::new(Some(Ref::from_schema_name("ErrorBody"))),
        )
        .build();
    for (path, item) in document.paths.paths.iter_mut() {
        let changes = [&mut item.put, &mut item.post, &mut item.delete];
        for operation in changes.into_iter().flatten() {
            if path == routes::JOURNAL {
                continue;
            }
            operation
                .responses
                .responses
                .entry("503".to_owned())
                .or_insert_with(|| unavailable.clone().into());
        }
    }
}

/// The document as `/openapi.json` serves it.
pub fn written(document: &utoipa::openapi::OpenApi) -> String {
    document.to_pretty_json().unwrap_or_else(|e| {
        serde_json::json!({ "error": format!("the document could not be written: {e}") })
            .to_string()
    })
}
