//! `rkube agent --simulate N` (being written for issue 5).

use super::AgentArgs;

pub async fn run(_args: AgentArgs, _nodes: u32) -> anyhow::Result<()> {
    anyhow::bail!("--simulate is not implemented yet")
}
