//! AGT-*, NODE-1, LAT-1: the agent sandbox.

use anyhow::Result;

use super::Ctx;
use crate::suite::report::Outcome;

fn todo() -> Result<Outcome> {
    Ok(Outcome::NotRun("check not implemented yet".into()))
}

/// AGT-1
pub fn agt_1(_: &mut Ctx<'_>) -> Result<Outcome> {
    todo()
}
/// AGT-2
pub fn agt_2(_: &mut Ctx<'_>) -> Result<Outcome> {
    todo()
}
/// AGT-3
pub fn agt_3(_: &mut Ctx<'_>) -> Result<Outcome> {
    todo()
}
/// AGT-4
pub fn agt_4(_: &mut Ctx<'_>) -> Result<Outcome> {
    todo()
}
/// AGT-5
pub fn agt_5(_: &mut Ctx<'_>) -> Result<Outcome> {
    todo()
}
/// AGT-6
pub fn agt_6(_: &mut Ctx<'_>) -> Result<Outcome> {
    todo()
}
/// NODE-1
pub fn node_1(_: &mut Ctx<'_>) -> Result<Outcome> {
    todo()
}
/// LAT-1
pub fn lat_1(_: &mut Ctx<'_>) -> Result<Outcome> {
    todo()
}
