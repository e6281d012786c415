//! The MQTT session: owns rumqttc's event loop, which does nothing unless
//! polled. It connects with a last will, waits with exponential backoff and
//! jitter between failed attempts (rumqttc reconnects on the next poll with
//! no delay of its own), re-subscribes after every connect and tells the
//! agent when a connection is up. It publishes what it is handed and knows
//! nothing of Home Assistant.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, LastWill, MqttOptions, Packet, QoS, Transport,
};
use tokio::sync::mpsc;
use tokio_rustls::rustls;

/// What the session tells the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    /// A connection is up (after every ConnAck): the one moment to
    /// (re)announce, since a broker restart loses retained messages.
    Connected,
    /// The connection was lost; attempts continue with backoff.
    Disconnected,
    /// A message arrived on a subscribed topic.
    Message {
        /// Its topic.
        topic: String,
        /// Its payload.
        payload: Vec<u8>,
    },
}

/// TLS settings as files; read once at start so a bad file is a config error.
#[derive(Debug, Clone, Default)]
pub struct TlsFiles {
    /// CA bundle; `None` means the system's roots.
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key.
    pub client_auth: Option<(PathBuf, PathBuf)>,
}

/// Why TLS could not be set up: names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("no usable root certificates: {0}")]
    Roots(String),
    #[error("client certificate/key rejected: {0}")]
    ClientAuth(String),
}

/// Everything needed to connect.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// Broker host.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// Client id.
    pub client_id: String,
    /// Keepalive interval.
    pub keepalive: Duration,
    /// User name and password.
    pub credentials: Option<(String, String)>,
    /// TLS, if used.
    pub tls: Option<TlsFiles>,
    /// Last will: topic and payload, published retained by the broker when
    /// the connection dies without a DISCONNECT.
    pub will: Option<(String, String)>,
    /// Topics to subscribe to after every connect.
    pub subscriptions: Vec<String>,
    /// Delays between failed attempts.
    pub backoff: Backoff,
}

pub use crate::backoff::Backoff;

/// The publishing side, held by the agent.
#[derive(Clone)]
pub struct Publisher {
    client: AsyncClient,
}

/// Why a publish did not go out.
#[derive(Debug, thiserror::Error)]
#[error("publish to {topic} dropped: {reason}")]
pub struct Dropped {
    /// The topic.
    pub topic: String,
    /// Why.
    pub reason: String,
}

impl Publisher {
    /// Queues a publish without waiting. When the queue is full (the broker
    /// is away) the message is dropped rather than stalling collection:
    /// everything we publish is re-sent whole on the next connect.
    pub fn publish(&self, topic: &str, payload: impl Into<Vec<u8>>, retain: bool) -> Result<(), Dropped> {
        let qos = if retain { QoS::AtLeastOnce } else { QoS::AtMostOnce };
        self.client
            .try_publish(topic, qos, retain, payload.into())
            .map_err(|e| Dropped {
                topic: topic.to_string(),
                reason: e.to_string(),
            })
    }

    /// Asks the session to send DISCONNECT after what is queued, and end.
    pub fn disconnect(&self) -> Result<(), Dropped> {
        self.client.try_disconnect().map_err(|e| Dropped {
            topic: String::new(),
            reason: e.to_string(),
        })
    }
}

/// The event loop side, run as its own task by [`Session::run`].
pub struct Session {
    eventloop: EventLoop,
    client: AsyncClient,
    subscriptions: Vec<String>,
    backoff: Backoff,
    endpoint: String,
}

/// Requests queued between the agent and the event loop. Small on purpose:
/// while the broker is away, old states are dropped, not queued.
const REQUEST_QUEUE: usize = 32;

impl Session {
    /// Builds the session (reads TLS files, but does not connect yet).
    pub fn new(opts: SessionOptions) -> Result<(Publisher, Session), TlsError> {
        let mut mqtt = MqttOptions::new(opts.client_id.clone(), opts.host.clone(), opts.port);
        mqtt.set_keep_alive(opts.keepalive)
            .set_clean_session(true)
            // Discovery for a host with many mounts and interfaces can exceed
            // rumqttc's 10 KiB default; incoming is only HA's birth.
            .set_max_packet_size(64 * 1024, 1024 * 1024);
        if let Some((topic, payload)) = &opts.will {
            mqtt.set_last_will(LastWill::new(topic, payload.clone(), QoS::AtLeastOnce, true));
        }
        if let Some((user, pass)) = &opts.credentials {
            mqtt.set_credentials(user.clone(), pass.clone());
        }
        if let Some(tls) = &opts.tls {
            mqtt.set_transport(Transport::tls_with_config(rustls_config(tls)?.into()));
        }
        let (client, eventloop) = AsyncClient::new(mqtt, REQUEST_QUEUE);
        let scheme = if opts.tls.is_some() { "mqtts" } else { "mqtt" };
        Ok((
            Publisher {
                client: client.clone(),
            },
            Session {
                eventloop,
                client,
                subscriptions: opts.subscriptions,
                backoff: opts.backoff,
                endpoint: format!("{scheme}://{}:{}", opts.host, opts.port),
            },
        ))
    }

    /// Polls until the agent asks for a disconnect (or drops every sender).
    pub async fn run(mut self, events: mpsc::Sender<SessionEvent>) {
        let mut failures: u32 = 0;
        let mut connected = false;
        let mut last_error = String::new();
        loop {
            match self.eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    tracing::info!(broker = %self.endpoint, attempts = failures + 1, "connected");
                    failures = 0;
                    last_error.clear();
                    connected = true;
                    for topic in &self.subscriptions {
                        if let Err(e) = self.client.try_subscribe(topic.as_str(), QoS::AtLeastOnce) {
                            tracing::warn!(%topic, error = %e, "cannot subscribe");
                        }
                    }
                    if events.send(SessionEvent::Connected).await.is_err() {
                        return;
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let msg = SessionEvent::Message {
                        topic: p.topic.clone(),
                        payload: p.payload.to_vec(),
                    };
                    if events.send(msg).await.is_err() {
                        return;
                    }
                }
                Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => {
                    tracing::debug!("disconnect sent");
                    return;
                }
                Ok(_) => {}
                Err(ConnectionError::RequestsDone) => return,
                Err(e) => {
                    let error = describe(&e);
                    let delay = self.backoff.next_delay(failures);
                    let retry_in_ms = delay.as_millis() as u64;
                    if connected {
                        connected = false;
                        tracing::warn!(broker = %self.endpoint, error = %error, retry_in_ms, "connection lost");
                        last_error.clone_from(&error);
                        if events.send(SessionEvent::Disconnected).await.is_err() {
                            return;
                        }
                    } else if error != last_error || (failures + 1).is_multiple_of(10) {
                        // One line when the cause changes, then a reminder every
                        // tenth attempt: a broker down for a day is not 1,440 lines.
                        tracing::warn!(broker = %self.endpoint, attempt = failures + 1, error = %error, retry_in_ms, "cannot connect");
                        last_error = error;
                    } else {
                        tracing::debug!(attempt = failures + 1, error = %error, retry_in_ms, "cannot connect");
                    }
                    failures = failures.saturating_add(1);
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
}

/// rumqttc's errors, worded for a person who has to fix the cause.
fn describe(e: &ConnectionError) -> String {
    use rumqttc::ConnectReturnCode as C;
    match e {
        ConnectionError::ConnectionRefused(C::BadUserNamePassword) => {
            "broker refused the user name or password (CONNACK 4)".into()
        }
        ConnectionError::ConnectionRefused(C::NotAuthorized) => {
            "broker refused: not authorised, check user name and password (CONNACK 5)".into()
        }
        ConnectionError::ConnectionRefused(code) => format!("broker refused the connection: {code:?}"),
        ConnectionError::NetworkTimeout => "timed out connecting".into(),
        other => other.to_string(),
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::File {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

fn rustls_config(tls: &TlsFiles) -> Result<rustls::ClientConfig, TlsError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let mut roots = rustls::RootCertStore::empty();
    match &tls.ca_file {
        Some(path) => {
            let pem = read(path)?;
            let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<_, _>>()
                .map_err(|e| TlsError::File {
                    path: path.clone(),
                    message: format!("not PEM certificates: {e}"),
                })?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(TlsError::File {
                    path: path.clone(),
                    message: "no CA certificate in it".into(),
                });
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(TlsError::Roots(format!(
                    "the system has none ({} errors); set mqtt.tls.ca_file",
                    found.errors.len()
                )));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Roots(e.to_string()))?
        .with_root_certificates(roots);
    match &tls.client_auth {
        None => Ok(builder.with_no_client_auth()),
        Some((cert_path, key_path)) => {
            let cert_pem = read(cert_path)?;
            let certs: Vec<_> = CertificateDer::pem_slice_iter(&cert_pem)
                .collect::<Result<_, _>>()
                .map_err(|e| TlsError::File {
                    path: cert_path.clone(),
                    message: format!("not a PEM certificate: {e}"),
                })?;
            let key = PrivateKeyDer::from_pem_slice(&read(key_path)?).map_err(|e| TlsError::File {
                path: key_path.clone(),
                message: format!("no PEM private key: {e}"),
            })?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| TlsError::ClientAuth(e.to_string()))
        }
    }
}
