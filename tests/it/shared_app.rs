//! One in-process app per test thread, for properties that run hundreds of cases.
//!
//! Building an app's router takes some 20 ms in a debug build, far more than a case's
//! requests, so a property reuses its thread's app and resets it (`POST /_mock/reset`'s
//! own `AppState::reset`: runs, journal, configs, faults) before each case.

use tokio::runtime::Runtime;

use crate::helpers::TestApp;

thread_local! {
    static APP: &'static (Runtime, TestApp) = {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let app = runtime.block_on(async { TestApp::new() });
        // Lives as long as the thread: a test thread ends with its test.
        Box::leak(Box::new((runtime, app)))
    };
}

/// This thread's runtime and app, the app reset.
pub fn reset_app() -> &'static (Runtime, TestApp) {
    let shared = APP.with(|shared| *shared);
    shared
        .0
        .block_on(shared.1.state.reset())
        .expect("a reset in memory cannot fail");
    shared
}
