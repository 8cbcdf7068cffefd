//! One method per endpoint used.

use serde::Serialize;
use serde_json::Value;

use super::types::*;
use super::{ApiError, Client, Method};
use crate::labels::Labels;

fn json(body: &impl Serialize) -> Value {
    // Serializing these plain structs cannot fail.
    serde_json::to_value(body).unwrap_or(Value::Null)
}

impl Client {
    /// `GET /server_types`, every page.
    pub fn server_types(&self) -> Result<Vec<ServerType>, ApiError> {
        self.list("/server_types", "server_types", &[])
    }

    /// `POST /ssh_keys`
    pub fn create_ssh_key(&self, req: &CreateSshKey) -> Result<SshKey, ApiError> {
        let r: SshKeyResponse = self.typed(Method::Post, "/ssh_keys", &[], Some(&json(req)))?;
        Ok(r.ssh_key)
    }

    /// `DELETE /ssh_keys/{id}`
    pub fn delete_ssh_key(&self, id: i64) -> Result<(), ApiError> {
        self.send(Method::Delete, &format!("/ssh_keys/{id}"), &[], None)
            .map(drop)
    }

    /// `GET /ssh_keys?label_selector=…`, every page.
    pub fn ssh_keys(&self, selector: &str) -> Result<Vec<SshKey>, ApiError> {
        self.list(
            "/ssh_keys",
            "ssh_keys",
            &[("label_selector", selector.to_string())],
        )
    }

    /// `POST /servers`
    pub fn create_server(&self, req: &CreateServer) -> Result<CreateServerResponse, ApiError> {
        self.typed(Method::Post, "/servers", &[], Some(&json(req)))
    }

    /// `GET /servers/{id}`
    pub fn server(&self, id: i64) -> Result<Server, ApiError> {
        let r: ServerResponse = self.typed(Method::Get, &format!("/servers/{id}"), &[], None)?;
        Ok(r.server)
    }

    /// `GET /servers?label_selector=…`, every page.
    pub fn servers(&self, selector: &str) -> Result<Vec<Server>, ApiError> {
        self.list(
            "/servers",
            "servers",
            &[("label_selector", selector.to_string())],
        )
    }

    /// `DELETE /servers/{id}`: the deletion's action.
    pub fn delete_server(&self, id: i64) -> Result<Action, ApiError> {
        let r: ActionResponse = self.typed(Method::Delete, &format!("/servers/{id}"), &[], None)?;
        Ok(r.action)
    }

    /// `POST /servers/{id}/actions/{action}` without a body (`poweron`,
    /// `shutdown`, `poweroff`, …).
    pub fn server_action(&self, id: i64, action: &str) -> Result<Action, ApiError> {
        let path = format!("/servers/{id}/actions/{action}");
        let r: ActionResponse = self.typed(Method::Post, &path, &[], None)?;
        Ok(r.action)
    }

    /// `POST /servers/{id}/actions/enable_rescue` (`linux64`, these keys).
    pub fn enable_rescue(&self, id: i64, ssh_key: i64) -> Result<Action, ApiError> {
        let body = EnableRescue {
            kind: "linux64",
            ssh_keys: vec![ssh_key],
        };
        let path = format!("/servers/{id}/actions/enable_rescue");
        let r: ActionResponse = self.typed(Method::Post, &path, &[], Some(&json(&body)))?;
        Ok(r.action)
    }

    /// `POST /servers/{id}/actions/create_image` (type `snapshot`).
    pub fn create_snapshot(
        &self,
        id: i64,
        description: &str,
        labels: &Labels,
    ) -> Result<CreateImageResponse, ApiError> {
        let body = CreateImage {
            description,
            kind: "snapshot",
            labels,
        };
        let path = format!("/servers/{id}/actions/create_image");
        self.typed(Method::Post, &path, &[], Some(&json(&body)))
    }

    /// `GET /images/{id}`
    pub fn image(&self, id: i64) -> Result<Image, ApiError> {
        let r: ImageResponse = self.typed(Method::Get, &format!("/images/{id}"), &[], None)?;
        Ok(r.image)
    }

    /// `GET /images?type=snapshot&label_selector=…`, every page.
    pub fn snapshots(&self, selector: &str) -> Result<Vec<Image>, ApiError> {
        let query = [
            ("type", "snapshot".to_string()),
            ("label_selector", selector.to_string()),
        ];
        self.list("/images", "images", &query)
    }
}
