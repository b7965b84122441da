//! Every backend brings its settings in its descriptor; the gateway reads
//! them from there. A secret setting the log redactor did not cover would
//! leak a key into the logs: this fails first.

use backends::BackendKind;
use lightning_fallback_gateway::redact::{is_secret_var, Redactor};

fn every_kind() -> impl Iterator<Item = BackendKind> {
    [BackendKind::Alby].into_iter().chain(BackendKind::ALL)
}

#[test]
fn every_secret_setting_of_every_backend_is_redacted() {
    for k in every_kind() {
        let d = k.descriptor();
        assert_eq!(d.kind, k, "{k:?}'s descriptor names another kind");
        if let Some(c) = d.credential {
            assert!(
                c.secret,
                "{k:?}: its credential {} must be secret",
                c.name()
            );
        }
        for s in d.settings() {
            for name in s.names {
                // A name that says "key", "secret", "rune"... is a secret.
                assert!(
                    s.secret || !is_secret_var(name),
                    "{k:?}: {name} looks secret but is declared public"
                );
                if !s.secret {
                    continue;
                }
                let value = format!("value-of-{name}-0123456789abcdef");
                let r = Redactor::from_lookup(|n| (n == *name).then(|| value.clone()));
                let line = r.redact_str(&format!("upstream said: {value} was refused"));
                assert!(
                    !line.contains(&value),
                    "{k:?}: {name} is not redacted: {line}"
                );
            }
        }
    }
}

#[test]
fn every_backend_has_a_label_and_a_location_or_none_needed() {
    for k in BackendKind::ALL {
        let d = k.descriptor();
        assert!(!d.label.is_empty());
        // A backend reached over the network says where (the mock is not).
        assert_eq!(d.location.is_none(), k == BackendKind::Mock, "{k:?}");
    }
}
