//! `command`: `sh -c COMMAND`; exit 0 is up, and the last lines it printed are the detail.
//! It runs in its own process group, killed with it when the timeout runs out.

use lifeboat_core::probes::ProbeConfig;

use super::Seen;

pub async fn run(probe: &ProbeConfig) -> Result<Seen, String> {
    let command = probe.command.as_deref().unwrap_or_default();
    let detail =
        crate::drill::checks::run_command(command, &[("LIFEBOAT_PROBE", probe.name.as_str())], &[])
            .await?;
    Ok(Seen {
        detail,
        ..Seen::default()
    })
}
