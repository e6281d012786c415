//! One connection to a broker in either protocol: rumqttc's 3.1.1 client
//! and its separate v5 client, behind one small surface so the session's
//! loop (backoff, failover, announcing) exists once.

use std::time::Duration;

use rumqttc::v5;
use rumqttc::{Outgoing, QoS};

use super::{SessionOptions, TlsError};

/// The MQTT protocol spoken to the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// MQTT 3.1.1: what every engine speaks (NATS speaks nothing else).
    #[default]
    V311,
    /// MQTT 5: the broker drops messages larger than we accept, and the
    /// will can be delayed so a quick reconnect shows no `offline`.
    V5,
}

/// The agent's limit for incoming messages (`SessionOptions::message_limit`):
/// larger ones are dropped with a log line, since Home Assistant's birth and
/// our command words are a few bytes.
pub const MESSAGE_LIMIT_BYTES: usize = 4 * 1024;

/// MQTT 3.1.1 cannot tell the broker a size limit, and rumqttc ends the
/// connection on a packet above its read limit before reading it. So the
/// read limit is set well above anything legitimate and bounded: messages
/// up to 1 MiB are read and dropped, keeping the session. Not higher:
/// rumqttc reads a packet whole into its read buffer, which then keeps
/// that capacity (resident) as long as the connection lasts. Above it the
/// connection ends; the session reconnects without resetting the backoff
/// and leaves the topic the message came on unsubscribed for a while when
/// it arrived right after subscribing (a retained one).
pub const V311_READ_LIMIT_BYTES: usize = 1024 * 1024;

/// Sent in MQTT 5's CONNECT as Maximum Packet Size: the broker then never
/// sends us a larger packet (it drops the message for us, MQTT 5 §3.1.2.11.4).
pub const V5_MAX_PACKET_BYTES: u32 = 64 * 1024;

/// Outgoing limit: discovery for a host with many mounts and interfaces
/// can exceed rumqttc's 10 KiB default.
const OUTGOING_LIMIT_BYTES: usize = 1024 * 1024;

/// How long to wait for a TCP/TLS connect and the CONNACK: a fresh NATS
/// cluster can take about 5 s to answer its first client.
const CONNECT_TIMEOUT_SECONDS: u64 = 10;

/// Requests queued between the agent and the event loop. Small on purpose:
/// while the broker is away, old states are dropped, not queued.
const REQUEST_QUEUE: usize = 32;

/// rumqttc's keepalive while the session pings after the agent's
/// publishes (`SessionOptions::pings_on_publish`): a year, so its own
/// timer, which rumqttc reads when it resets it at each ping, stays quiet
/// after the connection's first ping. tokio's timer wheel wakes the
/// process three times for a 30 s sleep (it moves the entry down a level
/// at 4 s and at 64 ms before the deadline), then once more for the ping:
/// 2.30 wake-ups per 10 s cycle with it, 1.56 without (issue 13). The
/// CONNECT never carries it: the session sets the real keepalive again
/// before every connect.
pub(super) const PARKED: Duration = Duration::from_secs(365 * 24 * 3600);

/// In-flight QoS 1 publishes allowed under MQTT 5 (see where it is set).
const V5_INFLIGHT: u16 = 100;

/// What one poll of the event loop gave.
#[derive(Debug)]
pub(super) enum Polled {
    /// A CONNACK: the connection is up.
    ConnAck,
    /// A message within [`MESSAGE_LIMIT_BYTES`].
    Message { topic: String, payload: Vec<u8> },
    /// A message that was read but is too large to hand on.
    Oversized { topic: String, bytes: usize },
    /// A SUBACK: the broker took our last SUBSCRIBE (its retained
    /// messages come right behind it).
    SubAck,
    /// Our DISCONNECT went out: the session ends.
    DisconnectSent,
    /// Every request sender is gone: the session ends.
    Done,
    /// Our PINGREQ went out (rumqttc's timer's or one we queued).
    PingSent,
    /// Anything else (acks, PINGRESPs, our publishes).
    Other,
    /// The connection failed or was lost.
    Failed {
        /// Why, worded for a person.
        error: String,
        /// It ended on an incoming packet over the read limit (MQTT 3.1.1
        /// cannot tell the broker a limit).
        too_large: bool,
        /// A SUBACK was read in the same batch as what ended the
        /// connection, so it was never handed on (see [`Link::poll`]).
        suback_unread: bool,
    },
}

impl Polled {
    fn failed(error: String) -> Polled {
        Polled::Failed {
            error,
            too_large: false,
            suback_unread: false,
        }
    }

    fn too_large(error: String) -> Polled {
        Polled::Failed {
            error,
            too_large: true,
            suback_unread: false,
        }
    }
}

/// The client half (cloneable, used to publish and subscribe).
#[derive(Clone)]
pub(super) enum Client {
    V311(rumqttc::AsyncClient),
    V5(v5::AsyncClient),
}

/// The event loop half.
pub(super) enum Link {
    V311(Box<rumqttc::EventLoop>),
    V5(Box<v5::EventLoop>),
}

/// Builds rumqttc's options for one broker from the session's options.
pub(super) enum Options {
    V311(Box<rumqttc::MqttOptions>),
    V5(Box<v5::MqttOptions>),
}

pub(super) fn options(opts: &SessionOptions, host: &str, port: u16) -> Result<Options, TlsError> {
    let transport = match &opts.tls {
        Some(tls) => Some(rumqttc::Transport::tls_with_config(
            super::rustls_config(tls)?.into(),
        )),
        None => None,
    };
    Ok(match opts.protocol {
        Protocol::V311 => {
            let mut o = rumqttc::MqttOptions::new(opts.client_id.clone(), host, port);
            o.set_keep_alive(opts.keepalive)
                .set_clean_session(true)
                .set_max_packet_size(V311_READ_LIMIT_BYTES, OUTGOING_LIMIT_BYTES);
            if let Some((topic, payload)) = &opts.will {
                o.set_last_will(rumqttc::LastWill::new(
                    topic,
                    payload.clone(),
                    QoS::AtLeastOnce,
                    true,
                ));
            }
            if let Some((user, pass)) = &opts.credentials {
                o.set_credentials(user.clone(), pass.clone());
            }
            if let Some(t) = transport {
                o.set_transport(t);
            }
            Options::V311(Box::new(o))
        }
        Protocol::V5 => {
            let mut o = v5::MqttOptions::new(opts.client_id.clone(), host, port);
            let delay = u32::try_from(opts.will_delay.as_secs()).unwrap_or(u32::MAX);
            o.set_keep_alive(opts.keepalive)
                .set_clean_start(true)
                .set_connection_timeout(CONNECT_TIMEOUT_SECONDS)
                // rumqttc's v5 state keeps one slot per possible in-flight
                // publish, 65,535 unless limited: 14 MiB of RSS measured.
                // We have a few QoS 1 messages in flight at most; 100 is
                // rumqttc's 3.1.1 default.
                .set_outgoing_inflight_upper_limit(V5_INFLIGHT)
                .set_max_packet_size(Some(
                    V5_MAX_PACKET_BYTES.max(
                        u32::try_from(opts.message_limit)
                            .unwrap_or(u32::MAX)
                            .saturating_add(1024),
                    ),
                ))
                // The broker waits for the earlier of the will delay and the
                // session's end before publishing the will (MQTT 5 §3.1.3.2.2):
                // a session expiring at once would fire it at once. Clean start
                // on every connect still carries nothing over.
                .set_session_expiry_interval(Some(delay));
            if let Some((topic, payload)) = &opts.will {
                let props = v5::mqttbytes::v5::LastWillProperties {
                    delay_interval: (delay > 0).then_some(delay),
                    payload_format_indicator: None,
                    message_expiry_interval: None,
                    content_type: None,
                    response_topic: None,
                    correlation_data: None,
                    user_properties: Vec::new(),
                };
                o.set_last_will(v5::mqttbytes::v5::LastWill::new(
                    topic,
                    payload.clone(),
                    v5::mqttbytes::QoS::AtLeastOnce,
                    true,
                    Some(props),
                ));
            }
            if let Some((user, pass)) = &opts.credentials {
                o.set_credentials(user.clone(), pass.clone());
            }
            if let Some(t) = transport {
                o.set_transport(t);
            }
            Options::V5(Box::new(o))
        }
    })
}

impl Link {
    /// The client and event loop for `options`.
    pub(super) fn new(options: Options) -> (Client, Link) {
        match options {
            Options::V311(o) => {
                let (c, mut l) = rumqttc::AsyncClient::new(*o, REQUEST_QUEUE);
                let mut net = rumqttc::NetworkOptions::new();
                net.set_connection_timeout(CONNECT_TIMEOUT_SECONDS);
                l.set_network_options(net);
                (Client::V311(c), Link::V311(Box::new(l)))
            }
            Options::V5(o) => {
                let (c, l) = v5::AsyncClient::new(*o, REQUEST_QUEUE);
                (Client::V5(c), Link::V5(Box::new(l)))
            }
        }
    }

    /// Points the next connect at another broker; the request queue (and
    /// so every `Publisher`) stays the same.
    pub(super) fn retarget(&mut self, options: Options) {
        match (self, options) {
            (Link::V311(l), Options::V311(o)) => l.mqtt_options = *o,
            (Link::V5(l), Options::V5(o)) => l.options = *o,
            // Options are always built for the link's own protocol.
            _ => tracing::error!("protocol mismatch when changing broker"),
        }
    }

    /// Sets the keepalive rumqttc uses for the next CONNECT and for its
    /// own ping timer (see [`PARKED`]).
    pub(super) fn set_keepalive(&mut self, keepalive: Duration) {
        match self {
            Link::V311(l) => {
                l.mqtt_options.set_keep_alive(keepalive);
            }
            Link::V5(l) => {
                l.options.set_keep_alive(keepalive);
            }
        }
    }

    /// Queues a PINGREQ: the next poll sends it. If the last one is still
    /// unanswered, rumqttc ends the connection instead (a dead link).
    pub(super) fn queue_ping(&mut self) {
        match self {
            Link::V311(l) => l.pending.push_back(rumqttc::Request::PingReq(rumqttc::PingReq)),
            Link::V5(l) => l.pending.push_back(v5::Request::PingReq),
        }
    }

    /// The next event; incoming messages over `limit` bytes come back as
    /// [`Polled::Oversized`].
    ///
    /// rumqttc reads packets in batches into a queue it hands on one per
    /// poll; a packet that ends the connection ends the batch at once, and
    /// what the queue still holds would be handed on after the next
    /// CONNACK as if the new connection had sent it. On a failure the
    /// queue keeps only its messages and our own outgoing events; a
    /// SUBACK in it is dropped and reported (`suback_unread`): the session
    /// needs it to tell whose retained message ended the connection.
    pub(super) async fn poll(&mut self, limit: usize) -> Polled {
        match self {
            Link::V311(l) => {
                let polled = poll_v311(l, limit).await;
                after_failure(polled, || {
                    use rumqttc::{Event, Packet};
                    drop_stale(&mut l.state.events, |e| match e {
                        Event::Incoming(Packet::Publish(_)) | Event::Outgoing(_) => Queued::Keep,
                        Event::Incoming(Packet::SubAck(_)) => Queued::SubAck,
                        Event::Incoming(_) => Queued::Drop,
                    })
                })
            }
            Link::V5(l) => {
                let polled = poll_v5(l, limit).await;
                after_failure(polled, || {
                    use v5::{mqttbytes::v5::Packet, Event};
                    drop_stale(&mut l.state.events, |e| match e {
                        Event::Incoming(Packet::Publish(_)) | Event::Outgoing(_) => Queued::Keep,
                        Event::Incoming(Packet::SubAck(_)) => Queued::SubAck,
                        Event::Incoming(_) => Queued::Drop,
                    })
                })
            }
        }
    }
}

/// What an event left in rumqttc's queue by a dead connection is.
enum Queued {
    /// A message, or our own outgoing event: handed on as usual.
    Keep,
    /// A SUBACK: dropped, and reported (see [`Link::poll`]).
    SubAck,
    /// Any other ack: dropped.
    Drop,
}

/// On a failure, clears the dead connection's acks from the queue and
/// notes whether a SUBACK was among them; anything else passes.
fn after_failure(polled: Polled, drop_stale_acks: impl FnOnce() -> bool) -> Polled {
    match polled {
        Polled::Failed { error, too_large, .. } => Polled::Failed {
            error,
            too_large,
            suback_unread: drop_stale_acks(),
        },
        other => other,
    }
}

/// Drops the events `kind` does not keep; true when a SUBACK was one.
fn drop_stale<E>(events: &mut std::collections::VecDeque<E>, kind: impl Fn(&E) -> Queued) -> bool {
    let mut suback = false;
    events.retain(|e| match kind(e) {
        Queued::Keep => true,
        Queued::SubAck => {
            suback = true;
            false
        }
        Queued::Drop => false,
    });
    suback
}

fn message(topic: String, payload: &[u8], limit: usize) -> Polled {
    if payload.len() > limit {
        Polled::Oversized {
            topic,
            bytes: payload.len(),
        }
    } else {
        Polled::Message {
            topic,
            payload: payload.to_vec(),
        }
    }
}

async fn poll_v311(l: &mut rumqttc::EventLoop, limit: usize) -> Polled {
    use rumqttc::{ConnectReturnCode as C, ConnectionError as E, Event, Packet};
    match l.poll().await {
        Ok(Event::Incoming(Packet::ConnAck(_))) => Polled::ConnAck,
        Ok(Event::Incoming(Packet::SubAck(_))) => Polled::SubAck,
        Ok(Event::Incoming(Packet::Publish(p))) => message(p.topic, &p.payload, limit),
        Ok(Event::Outgoing(Outgoing::Disconnect)) => Polled::DisconnectSent,
        Ok(Event::Outgoing(Outgoing::PingReq)) => Polled::PingSent,
        Ok(_) => Polled::Other,
        Err(E::RequestsDone) => Polled::Done,
        Err(E::MqttState(rumqttc::StateError::Deserialization(
            rumqttc::Error::PayloadSizeLimitExceeded(size),
        ))) => Polled::too_large(format!(
            "a {size}-byte message arrived, over the {V311_READ_LIMIT_BYTES}-byte read limit; \
                 MQTT 3.1.1 cannot refuse it (mqtt.protocol = \"5\" makes the broker drop it)"
        )),
        Err(e) => Polled::failed(match e {
            E::ConnectionRefused(C::BadUserNamePassword) => {
                "broker refused the user name or password (CONNACK 4)".into()
            }
            E::ConnectionRefused(C::NotAuthorized) => {
                "broker refused: not authorised, check user name and password (CONNACK 5)".into()
            }
            E::ConnectionRefused(C::RefusedProtocolVersion) => "broker refused MQTT 3.1.1 (CONNACK 1)".into(),
            E::ConnectionRefused(code) => format!("broker refused the connection: {code:?}"),
            E::NetworkTimeout => "timed out connecting".into(),
            other => other.to_string(),
        }),
    }
}

async fn poll_v5(l: &mut v5::EventLoop, limit: usize) -> Polled {
    use v5::mqttbytes::v5::{ConnectReturnCode as C, Packet};
    use v5::{ConnectionError as E, Event};
    match l.poll().await {
        Ok(Event::Incoming(Packet::ConnAck(_))) => Polled::ConnAck,
        Ok(Event::Incoming(Packet::SubAck(_))) => Polled::SubAck,
        Ok(Event::Incoming(Packet::Publish(p))) => {
            message(String::from_utf8_lossy(&p.topic).into_owned(), &p.payload, limit)
        }
        Ok(Event::Outgoing(Outgoing::Disconnect)) => Polled::DisconnectSent,
        Ok(Event::Outgoing(Outgoing::PingReq)) => Polled::PingSent,
        Ok(_) => Polled::Other,
        Err(E::RequestsDone) => Polled::Done,
        // (The broker should not send one over our Maximum Packet Size.)
        Err(E::MqttState(v5::StateError::Deserialization(
            v5::mqttbytes::Error::PayloadSizeLimitExceeded { pkt_size, max },
        ))) => Polled::too_large(format!(
            "a {pkt_size}-byte packet arrived, over the {max}-byte Maximum Packet Size we sent"
        )),
        Err(e) => Polled::failed(match e {
            E::ConnectionRefused(C::BadUserNamePassword) => {
                "broker refused the user name or password (CONNACK 134)".into()
            }
            E::ConnectionRefused(C::NotAuthorized) => {
                "broker refused: not authorised, check user name and password (CONNACK 135)".into()
            }
            E::ConnectionRefused(C::UnsupportedProtocolVersion | C::RefusedProtocolVersion) => {
                "broker does not speak MQTT 5; set mqtt.protocol = \"3.1.1\"".into()
            }
            E::ConnectionRefused(code) => format!("broker refused the connection: {code:?}"),
            E::Timeout(_) => "timed out connecting".into(),
            other => other.to_string(),
        }),
    }
}

impl Client {
    pub(super) fn try_publish(&self, topic: &str, payload: Vec<u8>, retain: bool) -> Result<(), String> {
        let at_least_once = retain;
        match self {
            Client::V311(c) => {
                let qos = if at_least_once {
                    QoS::AtLeastOnce
                } else {
                    QoS::AtMostOnce
                };
                c.try_publish(topic, qos, retain, payload)
                    .map_err(|e| e.to_string())
            }
            Client::V5(c) => {
                use v5::mqttbytes::QoS as Q;
                let qos = if at_least_once {
                    Q::AtLeastOnce
                } else {
                    Q::AtMostOnce
                };
                c.try_publish(topic, qos, retain, payload)
                    .map_err(|e| e.to_string())
            }
        }
    }

    /// Subscribes at QoS 0: what we receive (HA's birth, HA's button
    /// presses) is published at QoS 0 anyway, and on NATS a QoS 1
    /// subscription is a JetStream consumer whose creation stalls the
    /// connection (our first publishes queue behind it) for seconds while
    /// a cluster elects leaders after a node died.
    pub(super) fn try_subscribe(&self, topic: &str) -> Result<(), String> {
        match self {
            Client::V311(c) => c.try_subscribe(topic, QoS::AtMostOnce).map_err(|e| e.to_string()),
            Client::V5(c) => c
                .try_subscribe(topic, v5::mqttbytes::QoS::AtMostOnce)
                .map_err(|e| e.to_string()),
        }
    }

    pub(super) fn try_disconnect(&self) -> Result<(), String> {
        match self {
            Client::V311(c) => c.try_disconnect().map_err(|e| e.to_string()),
            Client::V5(c) => c.try_disconnect().map_err(|e| e.to_string()),
        }
    }
}

/// How long a connection must have lasted for its loss to reset the
/// backoff: one that dies sooner (a retained message that kills it, a
/// broker that accepts and drops) counts as a failed attempt.
pub const STABLE_AFTER: Duration = Duration::from_secs(10);
