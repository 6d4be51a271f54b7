//! The log filter `regmesh serve` starts with: `REGMESH_LOG` (tracing's
//! `EnvFilter` syntax) or `info`, with the quieting below added.
//!
//! webrtc-dtls (the coaps listener's DTLS) logs a WARN for every TLS
//! extension a client offers that it does not implement (libcoap over
//! OpenSSL offers session tickets and encrypt-then-MAC in every
//! ClientHello). Ignoring unknown extensions is what TLS prescribes (RFC
//! 5246 §7.4.1.4), so those lines say nothing wrong, one or two per
//! handshake. Its handshake messages' target is kept to errors; every other
//! target, ours included, keeps the level asked for.
//!
//! Must never: lower the level of any target but webrtc-dtls's handshake
//! messages, or override a directive for it that the operator gave.

/// The target quieted, and to what.
const QUIET: &str = "webrtc_dtls::handshake=error";
/// The crate whose directives an operator may give to take over.
const QUIET_CRATE: &str = "webrtc_dtls";

/// The filter directives for `env` (the value of `REGMESH_LOG`, if set).
pub fn directives(env: Option<&str>) -> String {
    let asked = env.map(str::trim).filter(|s| !s.is_empty()).unwrap_or("info");
    if asked.contains(QUIET_CRATE) {
        asked.to_string()
    } else {
        format!("{asked},{QUIET}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiets_only_the_dtls_handshake_and_yields_to_the_operator() {
        assert_eq!(directives(None), "info,webrtc_dtls::handshake=error");
        assert_eq!(directives(Some(" ")), "info,webrtc_dtls::handshake=error");
        assert_eq!(
            directives(Some("warn,regmesh_front_rd=debug")),
            "warn,regmesh_front_rd=debug,webrtc_dtls::handshake=error"
        );
        assert_eq!(directives(Some("debug,webrtc_dtls=trace")), "debug,webrtc_dtls=trace");
        for d in [None, Some("warn")] {
            tracing_subscriber::EnvFilter::try_new(directives(d)).expect("valid directives");
        }
    }
}
