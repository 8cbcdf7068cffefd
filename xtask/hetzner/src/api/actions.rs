//! Waiting for actions: `GET /actions?id=…` until each is `success`.

use std::time::Instant;

use super::types::Action;
use super::{ApiError, Client, Method};
use crate::Interrupt;

impl Client {
    /// Poll the actions until all succeeded; the first `error` or a timeout
    /// fails. Stops early when `interrupt` is set (cleanup passes `None`: it
    /// must finish).
    pub fn wait_for(
        &self,
        actions: &[Action],
        interrupt: Option<&Interrupt>,
    ) -> Result<(), ApiError> {
        let started = Instant::now();
        let mut pending: Vec<Action> = actions.to_vec();
        loop {
            if let Some(failed) = pending.iter().find(|a| a.status == "error") {
                let (code, message) = failed
                    .error
                    .as_ref()
                    .map(|e| (e.code.clone(), e.message.clone()))
                    .unwrap_or_default();
                return Err(ApiError::ActionFailed {
                    id: failed.id,
                    command: failed.command.clone(),
                    code,
                    message,
                });
            }
            pending.retain(|a| a.status != "success");
            let Some(first) = pending.first() else {
                return Ok(());
            };
            if started.elapsed() > self.options.action_timeout {
                return Err(ApiError::ActionTimeout {
                    id: first.id,
                    command: first.command.clone(),
                    secs: started.elapsed().as_secs(),
                });
            }
            if interrupt.is_some_and(Interrupt::is_set) {
                return Err(ApiError::Interrupted);
            }
            std::thread::sleep(self.options.poll_interval);
            let query: Vec<(&str, String)> =
                pending.iter().map(|a| ("id", a.id.to_string())).collect();
            #[derive(serde::Deserialize)]
            struct Actions {
                actions: Vec<Action>,
            }
            let polled: Actions = self.typed(Method::Get, "/actions", &query, None)?;
            pending = polled.actions;
        }
    }
}
