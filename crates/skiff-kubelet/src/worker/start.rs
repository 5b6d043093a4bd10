//! Starting one container instance: back-off, image, config, create,
//! start, postStart hook — each failure becomes the container's waiting
//! reason and an Event, as upstream's `startContainer`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_cri::v1 as api;
use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};

use super::snapshot::{PodSnapshot, SandboxView};
use super::{PodWorker, grace_seconds};
use crate::status::Waiting;

/// How long a container start waits for the first list of Services.
const SERVICES_WAIT: Duration = Duration::from_secs(10);

fn waiting(reason: &str, message: impl Into<String>) -> Waiting {
    Waiting {
        reason: reason.to_owned(),
        message: message.into(),
    }
}

/// `name_namespace(uid)`, upstream's pod identifier in kubelet messages.
pub(crate) fn pod_desc(pod: &Pod) -> String {
    format!(
        "{}_{}({})",
        pod.metadata.name.as_deref().unwrap_or_default(),
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.uid.as_deref().unwrap_or_default()
    )
}

/// Seconds as Go prints a duration (`10s`, `1m20s`, `5m0s`).
pub(crate) fn go_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 {
        format!("{}m{}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// A wall-clock Unix-nanosecond time as an `Instant` (for back-off).
fn instant_of(nanos: i64) -> Instant {
    let now_wall = k8s_openapi::jiff::Timestamp::now().as_nanosecond();
    let ago = u64::try_from(now_wall.saturating_sub(i128::from(nanos)).max(0)).unwrap_or(0);
    Instant::now()
        .checked_sub(Duration::from_nanos(ago))
        .unwrap_or_else(Instant::now)
}

fn pull_policy(c: &Container) -> &str {
    match c.image_pull_policy.as_deref() {
        Some(p) => p,
        None => {
            let image = c.image.as_deref().unwrap_or_default();
            let last = image.rsplit('/').next().unwrap_or(image);
            if image.contains('@') || (last.contains(':') && !last.ends_with(":latest")) {
                "IfNotPresent"
            } else {
                "Always"
            }
        }
    }
}

impl PodWorker {
    pub(super) async fn start_container(
        &mut self,
        pod: &Pod,
        c: &Container,
        attempt: u32,
        restart: bool,
        sandbox: &SandboxView,
        snapshot: &PodSnapshot,
    ) -> Result<String, Waiting> {
        let key = format!("{}/{}", self.uid, c.name);
        if restart {
            let now = Instant::now();
            let since = snapshot
                .newest(&c.name)
                .map_or(now, |p| instant_of(p.finished_at));
            let mut backoff = self.shared.lock_restart_backoff();
            if let Some((left, whole)) = backoff.in_backoff_since(&key, since, now) {
                drop(backoff);
                self.wake_in(left);
                self.event(
                    pod,
                    Some(&c.name),
                    false,
                    "BackOff",
                    format!(
                        "Back-off restarting failed container {} in pod {}",
                        c.name,
                        pod_desc(pod)
                    ),
                );
                return Err(waiting(
                    "CrashLoopBackOff",
                    format!(
                        "back-off {} restarting failed container={} pod={}",
                        go_duration(whole),
                        c.name,
                        pod_desc(pod)
                    ),
                ));
            }
            backoff.next(&key, now);
        }

        let began = Instant::now();
        let (image_ref, image_user) = self.ensure_image(pod, c).await?;
        let image_done = began.elapsed();

        let (configmaps, secrets) = self.referenced_objects(pod).await;
        let service_env = match self.service_env(pod).await {
            Some(vars) => vars,
            None => {
                return Err(self.failed(
                    pod,
                    c,
                    "CreateContainerConfigError",
                    crate::config::SERVICES_NOT_READ.to_owned(),
                ));
            }
        };
        let volumes = self.volumes.clone().unwrap_or_default();
        let pod_ips: Vec<String> = sandbox.ip.iter().cloned().collect();
        let host_ip = self.shared.host_ips.first().map(String::as_str);
        let env = crate::config::PodEnv {
            node_name: &self.shared.config.node_name,
            host_ip,
            pod_ips: &pod_ips,
            configmaps: &configmaps,
            secrets: &secrets,
            service_env: &service_env,
            node_allocatable: None,
            memory_capacity: self.shared.memory_capacity,
        };
        let container_dir = self
            .shared
            .pod_dir(&self.uid)
            .join("containers")
            .join(&c.name);
        let termination_log = container_dir.join(format!("{attempt}.termination-log"));
        let host_network = pod
            .spec
            .as_ref()
            .and_then(|s| s.host_network)
            .unwrap_or(false);
        let hosts = if host_network {
            Some(crate::config::host_network_etc_hosts(
                pod,
                &self.shared.host_etc_hosts,
            ))
        } else {
            crate::config::etc_hosts(pod, &pod_ips, &self.shared.config.cluster_domain)
        };
        let etc_hosts = hosts.and_then(|content| {
            let path = self.shared.pod_dir(&self.uid).join("etc-hosts");
            std::fs::write(&path, content).ok().map(|()| path)
        });
        let prepared = std::fs::create_dir_all(&container_dir)
            .and_then(|()| std::fs::write(&termination_log, b""));
        if let Err(e) = prepared {
            return Err(self.failed(pod, c, "CreateContainerConfigError", e.to_string()));
        }
        let paths = crate::config::ContainerPaths {
            volumes,
            etc_hosts,
            termination_log,
        };
        let config = match crate::config::container_config(
            pod,
            c,
            attempt,
            &env,
            &paths,
            &image_ref,
            &image_user,
        ) {
            Ok(config) => config,
            Err(e) => return Err(self.failed(pod, c, "CreateContainerConfigError", e.to_string())),
        };
        let sandbox_config = self.shared.sandbox_config(pod, sandbox.attempt).ok();
        let config_done = began.elapsed();

        let mut cri = self.shared.cri.clone();
        let created = cri
            .runtime
            .create_container(api::CreateContainerRequest {
                pod_sandbox_id: sandbox.id.clone(),
                config: Some(config),
                sandbox_config,
            })
            .await;
        let id = match created {
            Ok(r) => r.into_inner().container_id,
            Err(e) => {
                return Err(self.failed(pod, c, "CreateContainerError", e.message().to_owned()));
            }
        };
        let create_done = began.elapsed();
        self.event(
            pod,
            Some(&c.name),
            true,
            "Created",
            format!("Created container: {}", c.name),
        );
        if let Err(e) = cri
            .runtime
            .start_container(api::StartContainerRequest {
                container_id: id.clone(),
            })
            .await
        {
            return Err(self.failed(pod, c, "RunContainerError", e.message().to_owned()));
        }
        tracing::debug!(
            pod = %self.uid,
            container = %c.name,
            image = ?image_done,
            config = ?config_done,
            create = ?create_done,
            total = ?began.elapsed(),
            "container started"
        );
        self.event(
            pod,
            Some(&c.name),
            true,
            "Started",
            format!("Started container {}", c.name),
        );

        if let Some(hook) = c.lifecycle.as_ref().and_then(|l| l.post_start.as_ref())
            && let Err(msg) = self
                .run_hook(hook, &id, sandbox.ip.as_deref(), grace_seconds(pod))
                .await
        {
            self.event(
                pod,
                Some(&c.name),
                false,
                "FailedPostStartHook",
                format!("PostStartHook failed: {msg}"),
            );
            self.stop_container(
                pod,
                &id,
                &c.name,
                grace_seconds(pod),
                Some("FailedPostStartHook"),
            )
            .await;
            return Err(waiting("PostStartHookError", msg));
        }
        Ok(id)
    }

    /// Records a Warning `Failed` event with `Error: <reason>` as upstream and
    /// returns the waiting reason.
    fn failed(&self, pod: &Pod, c: &Container, reason: &str, message: String) -> Waiting {
        self.event(
            pod,
            Some(&c.name),
            false,
            "Failed",
            format!("Error: {message}"),
        );
        waiting(reason, message)
    }

    /// The user the image runs as (for runAsNonRoot), from ImageStatus.
    async fn image_user(&self, image_ref: &str) -> crate::config::ImageUser {
        let mut cri = self.shared.cri.clone();
        let image = cri
            .images
            .image_status(api::ImageStatusRequest {
                image: Some(api::ImageSpec {
                    image: image_ref.to_owned(),
                    ..Default::default()
                }),
                verbose: false,
            })
            .await
            .ok()
            .and_then(|r| r.into_inner().image);
        match image {
            Some(i) => {
                crate::config::ImageUser::from_image_status(i.uid.map(|u| u.value), &i.username)
            }
            None => crate::config::ImageUser::from_image_status(None, ""),
        }
    }

    /// Makes sure the image is present per the pull policy; returns the
    /// reference the runtime resolved and the user the image runs as (from
    /// the status already read when the image was present; after a pull,
    /// from one status call on the pulled image).
    async fn ensure_image(
        &mut self,
        pod: &Pod,
        c: &Container,
    ) -> Result<(String, crate::config::ImageUser), Waiting> {
        let image = c.image.clone().unwrap_or_default();
        let spec = api::ImageSpec {
            image: image.clone(),
            ..Default::default()
        };
        let mut cri = self.shared.cri.clone();
        let present = match cri
            .images
            .image_status(api::ImageStatusRequest {
                image: Some(spec.clone()),
                verbose: false,
            })
            .await
        {
            Ok(r) => r.into_inner().image,
            Err(e) => {
                return Err(self.failed(
                    pod,
                    c,
                    "ErrImageInspect",
                    format!("Failed to inspect image {image:?}: {}", e.message()),
                ));
            }
        };
        let policy = pull_policy(c).to_owned();
        match (policy.as_str(), present) {
            ("Never", None) => {
                let msg =
                    format!("Container image {image:?} is not present with pull policy of Never");
                self.event(pod, Some(&c.name), false, "ErrImageNeverPull", msg.clone());
                return Err(waiting("ErrImageNeverPull", msg));
            }
            ("Never" | "IfNotPresent", Some(found)) => {
                self.event(
                    pod,
                    Some(&c.name),
                    true,
                    "Pulled",
                    format!("Container image {image:?} already present on machine"),
                );
                let user = crate::config::ImageUser::from_image_status(
                    found.uid.map(|u| u.value),
                    &found.username,
                );
                return Ok((found.id, user));
            }
            _ => {}
        }

        let key = format!("{}/{}", self.uid, image);
        let now = Instant::now();
        {
            let backoff = self.shared.lock_image_backoff();
            if let Some(left) = backoff.in_backoff_since_update(&key, now) {
                drop(backoff);
                self.wake_in(left);
                let msg = format!("Back-off pulling image {image:?}");
                self.event(pod, Some(&c.name), true, "BackOff", msg.clone());
                return Err(waiting("ImagePullBackOff", msg));
            }
        }
        self.event(
            pod,
            Some(&c.name),
            true,
            "Pulling",
            format!("Pulling image {image:?}"),
        );
        let started = Instant::now();
        let pulled = cri
            .images
            .pull_image(api::PullImageRequest {
                image: Some(spec),
                auth: None,
                sandbox_config: None,
            })
            .await;
        match pulled {
            Ok(r) => {
                self.shared.lock_image_backoff().reset(&key);
                let took = started.elapsed();
                self.event(
                    pod,
                    Some(&c.name),
                    true,
                    "Pulled",
                    format!(
                        "Successfully pulled image {image:?} in {took:.3?} ({took:.3?} including waiting)"
                    ),
                );
                let image_ref = r.into_inner().image_ref;
                let user = self.image_user(&image_ref).await;
                Ok((image_ref, user))
            }
            Err(e) => {
                self.shared.lock_image_backoff().next(&key, Instant::now());
                let msg = e.message().to_owned();
                self.event(
                    pod,
                    Some(&c.name),
                    false,
                    "Failed",
                    format!("Failed to pull image {image:?}: {msg}"),
                );
                self.event(
                    pod,
                    Some(&c.name),
                    false,
                    "Failed",
                    "Error: ErrImagePull".to_owned(),
                );
                self.wake_in(crate::backoff::INITIAL);
                Err(waiting("ErrImagePull", msg))
            }
        }
    }

    /// The ConfigMaps and Secrets the pod's env refers to (missing ones are
    /// absent; the config reports them).
    /// The pod's service environment variables, once the kubelet has read
    /// the Services (waiting a little for the first list); `None` before.
    async fn service_env(&self, pod: &Pod) -> Option<Vec<k8s_openapi::api::core::v1::EnvVar>> {
        let store = &self.shared.services;
        if tokio::time::timeout(SERVICES_WAIT, store.wait_until_ready())
            .await
            .ok()?
            .is_err()
        {
            return None;
        }
        let links = pod
            .spec
            .as_ref()
            .and_then(|s| s.enable_service_links)
            .unwrap_or(true);
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
        let services = store.state();
        Some(crate::config::service_env_vars(
            namespace,
            links,
            services.iter().map(AsRef::as_ref),
        ))
    }

    async fn referenced_objects(
        &self,
        pod: &Pod,
    ) -> (BTreeMap<String, ConfigMap>, BTreeMap<String, Secret>) {
        let refs = crate::config::referenced_objects(pod);
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let mut configmaps = BTreeMap::new();
        for name in &refs.configmaps {
            if let Ok(Some(cm)) = self.shared.objects.get_configmap(ns, name).await {
                configmaps.insert(name.clone(), cm);
            }
        }
        let mut secrets = BTreeMap::new();
        for name in &refs.secrets {
            if let Ok(Some(s)) = self.shared.objects.get_secret(ns, name).await {
                secrets.insert(name.clone(), s);
            }
        }
        (configmaps, secrets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_and_pull_policy_defaults() {
        assert_eq!(go_duration(Duration::from_secs(10)), "10s");
        assert_eq!(go_duration(Duration::from_secs(80)), "1m20s");
        assert_eq!(go_duration(Duration::from_secs(300)), "5m0s");
        let c = |image: &str| Container {
            name: "c".into(),
            image: Some(image.into()),
            ..Container::default()
        };
        assert_eq!(pull_policy(&c("busybox")), "Always");
        assert_eq!(pull_policy(&c("busybox:latest")), "Always");
        assert_eq!(pull_policy(&c("busybox:1.36")), "IfNotPresent");
        assert_eq!(pull_policy(&c("localhost:5000/busybox")), "Always");
        assert_eq!(pull_policy(&c("b@sha256:00")), "IfNotPresent");
    }
}
