//! A keep-alive HTTP load for the zero-downtime tests: `connections` clients on one pooled
//! hyper client, each sending its next request as soon as the last answer arrived, counting
//! every answer by the pid that served it and every failure by kind. Loopback only; runs until
//! [`Load::finish`].

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// What a load run saw.
#[derive(Default, Debug)]
pub struct Tally {
    /// Requests answered.
    pub ok: usize,
    /// Answers by the pid that served them.
    pub by_pid: BTreeMap<u32, usize>,
    /// Connections that could not be made (refused).
    pub connect_errors: Vec<String>,
    /// Requests that failed on an established connection, or answers without a pid.
    pub other_errors: Vec<String>,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.ok += other.ok;
        for (pid, n) in other.by_pid {
            *self.by_pid.entry(pid).or_default() += n;
        }
        self.connect_errors.extend(other.connect_errors);
        self.other_errors.extend(other.other_errors);
    }

    /// Panics if a connection was refused.
    pub fn assert_none_refused(&self) {
        assert!(
            self.connect_errors.is_empty(),
            "connections refused: {:?}",
            self.connect_errors
        );
    }

    /// Panics if a connection was refused, a request failed, or only one pid served.
    pub fn assert_nothing_lost(&self) {
        self.assert_none_refused();
        assert!(
            self.other_errors.is_empty(),
            "{} requests failed: {:?}",
            self.other_errors.len(),
            &self.other_errors[..self.other_errors.len().min(5)]
        );
        assert!(self.by_pid.len() > 1, "only {:?} served", self.by_pid);
    }
}

/// A running load.
pub struct Load {
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<Tally>,
}

impl Load {
    /// Starts `connections` clients on `http://addr/`; `pid_of` reads the serving pid from a body.
    pub fn start(addr: &str, connections: usize, pid_of: fn(&str) -> Option<u32>) -> Load {
        let uri: hyper::Uri = format!("http://{addr}/").parse().expect("a URI");
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicUsize::new(0));
        let (task_stop, task_answered) = (stop.clone(), answered.clone());
        let task = tokio::spawn(async move {
            let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new())
                .pool_max_idle_per_host(connections)
                .build_http();
            let clients: Vec<_> = (0..connections)
                .map(|_| {
                    let (client, uri) = (client.clone(), uri.clone());
                    let (stop, answered) = (task_stop.clone(), task_answered.clone());
                    tokio::spawn(async move {
                        let mut tally = Tally::default();
                        while !stop.load(Ordering::Relaxed) {
                            match client.get(uri.clone()).await {
                                Ok(response) => match response.into_body().collect().await {
                                    Ok(body) => {
                                        let body = String::from_utf8_lossy(&body.to_bytes()).into_owned();
                                        match pid_of(&body) {
                                            Some(pid) => {
                                                *tally.by_pid.entry(pid).or_default() += 1;
                                                tally.ok += 1;
                                                answered.fetch_add(1, Ordering::Relaxed);
                                            }
                                            None => tally.other_errors.push(format!("unexpected body {body:?}")),
                                        }
                                    }
                                    Err(e) => tally.other_errors.push(format!("body: {e}")),
                                },
                                Err(e) if e.is_connect() => tally.connect_errors.push(format!("{e:?}")),
                                Err(e) => tally.other_errors.push(format!("{e:?}")),
                            }
                        }
                        tally
                    })
                })
                .collect();
            let mut total = Tally::default();
            for c in clients {
                total.merge(c.await.expect("a client task"));
            }
            total
        });
        Load { stop, answered, task }
    }

    /// Waits until `more` further requests were answered: the load goes on meanwhile. Fails the
    /// test if the load stalls past [`crate::EVENT_DEADLINE`].
    pub async fn progress(&self, more: usize) {
        let target = self.answered.load(Ordering::Relaxed) + more;
        let reached = crate::eventually(crate::EVENT_DEADLINE, || {
            self.answered.load(Ordering::Relaxed) >= target
        })
        .await;
        assert!(
            reached,
            "the load stalled at {} answers",
            self.answered.load(Ordering::Relaxed)
        );
    }

    /// Stops the clients and returns what they saw.
    pub async fn finish(self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("the load task")
    }
}
