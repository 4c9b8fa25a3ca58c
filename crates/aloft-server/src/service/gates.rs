//! Webhook gates: the server's calls to the URLs a rollout names before a phase advances by
//! itself. Only the periodic rollout job asks them (a device's report never waits on a
//! webhook); the verdict is `domain::rollouts::gate_verdict`.

use std::time::Duration;

use aloft_api::management::{GateQuestion, WebhookGate};

use crate::domain::rollouts::{GATE_TIMEOUT_DEFAULT, gate_verdict, shown_url};

/// Asks each gate in turn, stopping at the first that does not answer 2xx; `Err` says why the
/// phase stays closed. Each call is bounded by its gate's timeout and follows no redirect.
pub async fn ask(gates: &[WebhookGate], question: &GateQuestion) -> Result<(), String> {
    let body =
        serde_json::to_vec(question).map_err(|e| format!("cannot encode the question: {e}"))?;
    let gates = gates.to_vec();
    let answers = tokio::task::spawn_blocking(move || {
        let mut answers = Vec::with_capacity(gates.len());
        for g in &gates {
            let answer = call(g, &body);
            let refused = !matches!(answer, Ok(code) if (200..300).contains(&code));
            tracing::info!(gate = %shown_url(&g.url), ?answer, "webhook gate asked");
            answers.push((g.url.clone(), answer));
            if refused {
                break;
            }
        }
        answers
    })
    .await
    .map_err(|e| format!("the webhook calls failed: {e}"))?;
    gate_verdict(&answers)
}

fn call(gate: &WebhookGate, body: &[u8]) -> Result<u16, String> {
    let timeout = Duration::from_secs(gate.timeout_seconds.unwrap_or(GATE_TIMEOUT_DEFAULT));
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .max_redirects(0)
        .user_agent("aloft-server (rollout gate)")
        .build()
        .into();
    agent
        .post(&gate.url)
        .header("content-type", "application/json")
        .send(body)
        .map(|r| r.status().as_u16())
        // The error's text may carry the URL: say what failed without it.
        .map_err(|e| match e {
            ureq::Error::Timeout(_) => format!("no answer within {} s", timeout.as_secs()),
            ureq::Error::Io(io) => format!("{}", io.kind()),
            ureq::Error::HostNotFound => "the host was not found".into(),
            ureq::Error::ConnectionFailed => "the connection failed".into(),
            ureq::Error::Tls(_) | ureq::Error::Rustls(_) => "the TLS handshake failed".into(),
            _ => "the request failed".into(),
        })
}
