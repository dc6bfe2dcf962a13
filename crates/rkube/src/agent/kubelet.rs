//! `rkube agent`: the real kubelet on this machine (being written for
//! issue 6).

use super::AgentArgs;

pub async fn run(_args: AgentArgs) -> anyhow::Result<()> {
    anyhow::bail!("the kubelet is not implemented yet")
}
