//! The `daemonset-hash-churn` rule: what proves this cause, and the remedy filled in from the evidence.

use super::*;

pub(super) fn daemonset_hash_churn(cx: &Cx) -> Option<Diagnosis> {
    let ev = cx.ev;
    let pod = ev.pod.as_ref()?;
    let (kind, ds) = pod.owner.as_ref()?;
    if kind != "DaemonSet" {
        return None;
    }
    let mut revisions: Vec<_> = ev
        .revisions
        .iter()
        .filter(|r| r.owner.as_deref().is_none_or(|o| o == ds))
        .collect();
    revisions.sort_by_key(|r| r.revision);
    let newest = revisions.last()?;
    let window = match (revisions.first().and_then(|r| r.created), newest.created) {
        (Some(a), Some(b)) => (b - a).num_seconds(),
        _ => i64::MAX,
    };
    // Revision numbers climb with every template change. A healthy DaemonSet makes a
    // new revision per real update; the hash bug flips between the same few templates,
    // so Kubernetes reuses their revisions and only the number climbs.
    // Saturating: revision numbers come from the input and may be anything.
    let flips = newest.revision.saturating_sub(revisions.len() as i64);
    let churning = newest.revision >= 4
        && ((revisions.len() <= 3 && flips >= 3) || (revisions.len() >= 3 && window < 600));
    if !churning {
        return None;
    }
    let stale_hash = pod
        .revision_hash
        .as_ref()
        .is_some_and(|h| !newest.name.ends_with(h.as_str()));
    let owner = ev.owner.as_ref();
    let affinity = owner.is_some_and(|o| o.affinity_terms >= 2);
    let mut confidence: f64 = 0.75;
    if stale_hash {
        confidence += 0.1;
    }
    if affinity {
        confidence += 0.1;
    }
    let owned = Tie::Owner(format!("daemonset {}/{ds}", pod.namespace));
    let mut evidence: Vec<Proof> = revisions
        .iter()
        .rev()
        .take(3)
        .map(|r| Proof::new(&r.quote, &owned))
        .collect();
    evidence.extend(
        owner
            .and_then(|o| o.generation_quote.as_ref())
            .map(|q| Proof::new(q, &owned)),
    );
    evidence.extend(
        pod.deletion_quote
            .iter()
            .map(|q| Proof::new(q, &Tie::PodObject)),
    );
    let writers: BTreeSet<&str> = owner
        .map(|o| {
            o.managers
                .iter()
                .filter(|(m, _, _)| m != "kube-controller-manager")
                .map(|(m, _, _)| m.as_str())
                .collect()
        })
        .unwrap_or_default();
    let ns = &pod.namespace;
    let mut remedy = vec![Step::look(
        format!("see the churn: revision {} of daemonset {ds} from {} templates", newest.revision, revisions.len()),
        format!("kubectl get controllerrevisions -n {ns} -l controller-revision-hash --sort-by=.revision"),
    )];
    if !writers.is_empty() {
        remedy.push(Step::say(format!(
            "find and stop what keeps rewriting the template (managedFields writers: {})",
            writers.into_iter().collect::<Vec<_>>().join(", ")
        )));
    }
    remedy.push(Step::look(
        format!("work-around: schedule daemonset {ds} with nodeSelector instead of nodeAffinity"),
        format!("kubectl edit daemonset {ds} -n {ns}"),
    ));
    remedy.push(Step::say(
        "long term: upgrade kube-controller-manager (the sorting bug of 1.10/1.11 is fixed)",
    ));
    let summary = format!(
        "daemonset {ns}/{ds} is at revision {} with only {} distinct template(s): it flips between them and its pods are replaced over and over",
        newest.revision,
        revisions.len()
    );
    diagnosis(
        CauseId::DaemonsetHashChurn,
        confidence,
        summary,
        evidence,
        remedy,
    )
}

#[cfg(test)]
mod tests {
    use super::super::{acts, assert_silent, fixture, run};
    use super::*;

    #[test]
    fn names_the_churning_daemonset() {
        let d =
            run(daemonset_hash_churn, &fixture("kind/daemonset-hash-churn")).expect("a diagnosis");
        assert_eq!(d.cause, CauseId::DaemonsetHashChurn);
        // The work-around is an edit of the DaemonSet: shown, not run by the rule.
        assert!(acts(&d).is_empty(), "{:?}", acts(&d));
        assert!(d.remedy.iter().any(|s| s
            .command
            .as_deref()
            .is_some_and(|c| c.starts_with("kubectl edit daemonset "))));
    }

    #[test]
    fn stays_silent_when_nothing_is_wrong() {
        assert_silent(daemonset_hash_churn);
    }
}
