//! What the controllers ask of an API error (upstream's
//! `k8s.io/apimachinery/pkg/api/errors` and `utilerrors.NewAggregate`).

/// The message of an API error as upstream prints it (the Status message).
pub fn api_message(err: &kube::Error) -> String {
    match err {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    }
}

fn code(err: &kube::Error) -> Option<u16> {
    match err {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

/// 404 (`IsNotFound`).
pub fn is_not_found(err: &kube::Error) -> bool {
    code(err) == Some(404)
}

/// 409 (`IsAlreadyExists` as the controllers meet it: on create).
pub fn is_already_exists(err: &kube::Error) -> bool {
    code(err) == Some(409)
}

/// 422 (`IsInvalid`).
pub fn is_invalid(err: &kube::Error) -> bool {
    code(err) == Some(422)
}

/// The namespace is being deleted (`HasStatusCause(err,
/// NamespaceTerminatingCause)`): every later create there fails too.
pub fn is_namespace_terminating(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(s) if s.details.as_ref().is_some_and(|d| {
        d.causes.iter().any(|c| c.reason == "NamespaceTerminating")
    }))
}

/// Several errors as one (`utilerrors.NewAggregate`): none is `Ok`, one is
/// itself, more are `[a, b, ...]`.
pub fn aggregate(mut errors: Vec<String>) -> Result<(), String> {
    match errors.len() {
        0 => Ok(()),
        1 => Err(errors.remove(0)),
        _ => Err(format!("[{}]", errors.join(", "))),
    }
}

#[cfg(test)]
mod tests {
    use super::aggregate;

    #[test]
    fn aggregate_prints_like_upstream() {
        assert_eq!(aggregate(Vec::new()), Ok(()));
        assert_eq!(aggregate(vec!["a".into()]), Err("a".to_owned()));
        assert_eq!(
            aggregate(vec!["a".into(), "b".into()]),
            Err("[a, b]".to_owned())
        );
    }
}
