//! The lookup proxy's side of the wire (document 004 §4.3, §4.4.2): per
//! upstream RD, discovery of its lookups, an observation of its resource
//! lookup, and a full fetch of both lookups whenever it notifies a change
//! (polling instead when it does not do Observe, or while it does not
//! answer). The links themselves are kept by [`crate::proxy`].
//!
//! Must never: write records, or re-fetch an upstream more often than its
//! notifications or [`PROXY_POLL`] ask.

use super::*;

/// Longest time an observation of an upstream goes unrenewed (a lost
/// notification or an observation the upstream forgot is noticed within it).
const OBSERVE_RENEW_MAX: Duration = Duration::from_secs(60);

/// How following an upstream ended.
enum Followed {
    /// The center is shutting down.
    Closing,
    /// The observation is due for renewal (or the upstream ended it).
    Lapsed,
    /// The upstream answered without Observe: poll it.
    NotObservable,
}

impl Server {
    /// Follows every upstream RD, each in a task of its own.
    pub(super) fn proxy_upstreams(self: &Arc<Self>) {
        for u in self.upstreams.clone() {
            let s = self.clone();
            tokio::spawn(async move { s.proxy_one(u).await });
        }
    }

    /// Discovers `u`'s lookups, then follows it: observing its resource
    /// lookup where it can, polling every [`PROXY_POLL`] where it cannot or
    /// while it does not answer.
    async fn proxy_one(self: Arc<Self>, u: SocketAddr) {
        let mut closing = self.node.closing();
        let notified = self
            .node
            .counter(
                "regmesh_rd_proxy_notifications_total",
                "Change notifications received from an upstream RD (lookup proxy)",
                &[("upstream", &u.to_string())],
            )
            .map_err(|e| tracing::warn!(error = %e, "rd proxy: metric"))
            .ok();
        let mut paths: Option<(Vec<String>, Vec<String>)> = None;
        loop {
            if paths.is_none() {
                match self.discover_lookups(u).await {
                    Ok(p) => paths = Some(p),
                    Err(e) => tracing::debug!(upstream = %u, error = %e, "rd proxy: discovery"),
                }
            }
            if let Some((res, ep)) = &paths {
                match self.follow(u, res, ep, notified.as_ref(), &mut closing).await {
                    Ok(Followed::Closing) => return,
                    Ok(Followed::Lapsed) => continue,
                    Ok(Followed::NotObservable) => {}
                    Err(e) => tracing::debug!(upstream = %u, error = %e, "rd proxy: observe"),
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(PROXY_POLL) => {}
                _ = closing.changed() => return,
            }
        }
    }

    /// Observes `u`'s resource lookup and fetches both lookups at once and
    /// again on every notification, until the observation should be renewed
    /// (half the shortest lifetime `u` reported, at most
    /// [`OBSERVE_RENEW_MAX`]) or `u` turns out not to do Observe.
    async fn follow(
        &self,
        u: SocketAddr,
        res: &[String],
        ep: &[String],
        notified: Option<&regmesh_node::handle::Metric>,
        closing: &mut tokio::sync::watch::Receiver<bool>,
    ) -> Result<Followed, String> {
        let res_path: Vec<&str> = res.iter().map(String::as_str).collect();
        let (first, token, mut rx) = self.observe(u, &res_path).await?;
        let observing = first.get_first_option(CoapOption::Observe).is_some();
        let mut keep = self.fetch_upstream(u, res, ep).await;
        if !observing {
            self.unobserve(u, &token);
            keep?;
            return Ok(Followed::NotObservable);
        }
        let followed = loop {
            let renew = keep
                .as_ref()
                .map_or(PROXY_POLL, |k| (*k / 2).clamp(PROXY_POLL, OBSERVE_RENEW_MAX));
            tokio::select! {
                n = rx.recv() => match n {
                    Some(_) => {
                        // Notifications that queued meanwhile are one fetch.
                        let mut n = 1;
                        while rx.try_recv().is_ok() {
                            n += 1;
                        }
                        if let Some(m) = notified {
                            m.add(n);
                        }
                        keep = self.fetch_upstream(u, res, ep).await;
                    }
                    None => break Followed::Lapsed,
                },
                _ = tokio::time::sleep(renew) => break Followed::Lapsed,
                _ = closing.changed() => break Followed::Closing,
            }
        };
        self.unobserve(u, &token);
        Ok(followed)
    }

    /// The upstream's (resource lookup, endpoint lookup) paths.
    async fn discover_lookups(&self, u: SocketAddr) -> Result<(Vec<String>, Vec<String>), String> {
        let body = self
            .get_all(u, &[".well-known", "core"], &["rt=core.rd-lookup-*".into()])
            .await?;
        let text = String::from_utf8(body).map_err(|_| "not UTF-8")?;
        let found = crate::links::parse(&text).map_err(|e| e.to_string())?;
        let find = |rt: &str| {
            found
                .iter()
                .find(|l| l.values("rt").any(|v| v.split_ascii_whitespace().any(|w| w == rt)))
                .map(|l| {
                    l.href
                        .trim_start_matches('/')
                        .split('/')
                        .map(String::from)
                        .collect::<Vec<_>>()
                })
        };
        Ok((
            find("core.rd-lookup-res").ok_or("no core.rd-lookup-res")?,
            find("core.rd-lookup-ep").ok_or("no core.rd-lookup-ep")?,
        ))
    }

    /// Fetches `u`'s resource and endpoint lookups and replaces its proxied
    /// links; returns how long they are kept if `u` is not heard from again.
    async fn fetch_upstream(&self, u: SocketAddr, res: &[String], ep: &[String]) -> Result<Duration, String> {
        let res_path: Vec<&str> = res.iter().map(String::as_str).collect();
        let ep_path: Vec<&str> = ep.iter().map(String::as_str).collect();
        let text = String::from_utf8(self.get_all(u, &res_path, &[]).await?).map_err(|_| "not UTF-8")?;
        let found = crate::links::parse(&text).map_err(|e| e.to_string())?;
        let eps = String::from_utf8(self.get_all(u, &ep_path, &["lt-remaining".into()]).await?).unwrap_or_default();
        let eps = if eps.is_empty() {
            String::from_utf8(self.get_all(u, &ep_path, &[]).await?).unwrap_or_default()
        } else {
            eps
        };
        let keep_s = proxy::shortest_lifetime_s(&eps).unwrap_or(u64::from(handlers::LOOKUP_MAX_AGE_S));
        let until = Instant::now() + Duration::from_secs(keep_s);
        let provenance = format!("coap://{u}/{}", res.join("/"));
        let links: Vec<proxy::Proxied> = found
            .into_iter()
            .take(proxy::PROXIED_LINKS_MAX / proxy::UPSTREAMS_MAX)
            .map(|link| proxy::Proxied {
                link,
                provenance: provenance.clone(),
                until,
            })
            .collect();
        self.proxy.set(u, links);
        Ok(Duration::from_secs(keep_s))
    }
}
