//! A small D-Bus client for what host2mqtt asks systemd (and Flatcar's
//! update_engine): plain method calls with a timeout, no generated proxies.
//! It takes a bus address, so the same code talks to the system bus, a
//! user's bus, or a test's private bus.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use zbus::message::Type as MessageType;
use zbus::{Connection, DynamicType, MatchRule, MessageStream, OwnedObjectPath, OwnedVariant};

use super::units::UnitInfo;

/// systemd's bus name, object and manager interface.
const SYSTEMD: &str = "org.freedesktop.systemd1";
const SYSTEMD_PATH: &str = "/org/freedesktop/systemd1";
/// systemd's answer to a second `Subscribe` from the same client.
const ALREADY_SUBSCRIBED: &str = "org.freedesktop.systemd1.AlreadySubscribed";
const MANAGER: &str = "org.freedesktop.systemd1.Manager";
const SERVICE: &str = "org.freedesktop.systemd1.Service";
const PROPERTIES: &str = "org.freedesktop.DBus.Properties";

/// Flatcar's update_engine.
const UPDATE_ENGINE: &str = "com.coreos.update1";
const UPDATE_ENGINE_PATH: &str = "/com/coreos/update1";
const UPDATE_ENGINE_MANAGER: &str = "com.coreos.update1.Manager";

/// Why a bus could not be asked. Each names the bus address.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error(
        "no {manager} bus: set systemd.{manager}.address (or $DBUS_SESSION_BUS_ADDRESS / $XDG_RUNTIME_DIR)"
    )]
    NoAddress {
        /// `system` or `user`.
        manager: &'static str,
    },
    #[error("cannot connect to D-Bus at {address}: {source}")]
    Connect {
        /// The bus address.
        address: String,
        /// What zbus said.
        #[source]
        source: zbus::Error,
    },
    #[error("D-Bus at {address}: {call} got no answer within {timeout:?}")]
    Timeout {
        /// The bus address.
        address: String,
        /// What was asked.
        call: String,
        /// How long we waited.
        timeout: Duration,
    },
    #[error("D-Bus at {address}: {call} failed: {source}")]
    Call {
        /// The bus address.
        address: String,
        /// What was asked (method, and the unit it was about).
        call: String,
        /// What zbus said.
        #[source]
        source: zbus::Error,
    },
    #[error("D-Bus at {address}: the connection closed")]
    Closed {
        /// The bus address.
        address: String,
    },
    #[error("D-Bus at {address}: systemd left the bus")]
    ManagerGone {
        /// The bus address.
        address: String,
    },
}

impl BusError {
    /// True when the remote side answered with an error that only
    /// concerns this one call: the property or method does not exist (an
    /// older systemd), the unit is gone, the service is not on the bus.
    /// Not for I/O errors or time-outs, which mean the bus is in trouble.
    pub fn is_answer(&self) -> bool {
        matches!(
            self,
            BusError::Call {
                source: zbus::Error::FDO(_) | zbus::Error::MethodError(..),
                ..
            }
        )
    }
}

/// What update_engine's `GetStatus` says.
#[derive(Debug, Clone, PartialEq)]
pub struct UpdateEngineStatus {
    /// `UPDATE_STATUS_IDLE`, …, `UPDATE_STATUS_UPDATED_NEED_REBOOT`.
    pub operation: String,
    /// The version being or already installed ("" when none).
    pub new_version: String,
}

/// A connection to one bus.
#[derive(Debug, Clone)]
pub struct Bus {
    /// The zbus connection.
    conn: Connection,
    /// Its address, for error messages.
    address: String,
    /// The limit for each call.
    timeout: Duration,
}

impl Bus {
    /// Connects (and says Hello) within `timeout`.
    pub async fn connect(address: &str, timeout: Duration) -> Result<Bus, BusError> {
        let connect_error = |source| BusError::Connect {
            address: address.to_string(),
            source,
        };
        let builder = zbus::connection::Builder::address(address).method_timeout(timeout);
        let conn = match tokio::time::timeout(timeout, builder.build()).await {
            Ok(built) => built.map_err(connect_error)?,
            Err(_) => {
                return Err(BusError::Timeout {
                    address: address.to_string(),
                    call: "connect".into(),
                    timeout,
                })
            }
        };
        Ok(Bus {
            conn,
            address: address.to_string(),
            timeout,
        })
    }

    /// The address this bus was reached at.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Resolves when the connection closed (the bus went away).
    pub async fn closed(&self) {
        self.conn.closed().await
    }

    /// The error for a closed connection.
    pub fn closed_error(&self) -> BusError {
        BusError::Closed {
            address: self.address.clone(),
        }
    }

    /// The error for systemd leaving the bus.
    pub fn gone_error(&self) -> BusError {
        BusError::ManagerGone {
            address: self.address.clone(),
        }
    }

    /// One method call, its reply body deserialized as `R`.
    async fn call<B, R>(
        &self,
        dest: &str,
        path: &str,
        iface: &str,
        method: &str,
        body: &B,
        what: &str,
    ) -> Result<R, BusError>
    where
        B: Serialize + DynamicType,
        R: DeserializeOwned + zbus::Type,
    {
        let call_error = |source| BusError::Call {
            address: self.address.clone(),
            call: what.to_string(),
            source,
        };
        let pending = self.conn.call_method(Some(dest), path, Some(iface), method, body);
        let reply = match tokio::time::timeout(self.timeout, pending).await {
            Ok(reply) => reply.map_err(call_error)?,
            Err(_) => {
                return Err(BusError::Timeout {
                    address: self.address.clone(),
                    call: what.to_string(),
                    timeout: self.timeout,
                })
            }
        };
        reply.body().deserialize::<R>().map_err(call_error)
    }

    /// One property, as a variant.
    async fn property(
        &self,
        dest: &str,
        path: &str,
        iface: &str,
        name: &str,
        what: &str,
    ) -> Result<OwnedVariant, BusError> {
        self.call(dest, path, PROPERTIES, "Get", &(iface, name), what)
            .await
    }

    /// Asks systemd to send unit and job signals (it sends none otherwise).
    /// "Already subscribed" is success: systemd keeps its subscribers
    /// across a re-exec (the re-subscribe after `NameOwnerChanged` then
    /// finds us on its list), and a manager that took its name on the bus
    /// just after our first `Subscribe` announces itself the same way.
    pub async fn subscribe(&self) -> Result<(), BusError> {
        match self
            .call::<_, ()>(SYSTEMD, SYSTEMD_PATH, MANAGER, "Subscribe", &(), "Subscribe")
            .await
        {
            Err(BusError::Call {
                source: zbus::Error::MethodError(name, _, _),
                ..
            }) if name.as_str() == ALREADY_SUBSCRIBED => Ok(()),
            other => other,
        }
    }

    /// Every signal systemd sends: unit and job changes (after
    /// [`Bus::subscribe`]), `UnitNew`/`UnitRemoved`, `JobRemoved`, `Reloading`.
    /// Set up before subscribing, so nothing is missed in between.
    pub async fn systemd_signals(&self) -> Result<MessageStream, BusError> {
        let rule = MatchRule::builder()
            .msg_type(MessageType::Signal)
            .sender(SYSTEMD)
            .build();
        self.stream(rule, "AddMatch(systemd signals)").await
    }

    /// `NameOwnerChanged` for systemd's name: it left the bus, or came back
    /// after a re-exec (and must be subscribed to again).
    pub async fn owner_changes(&self) -> Result<MessageStream, BusError> {
        let rule = MatchRule::builder()
            .msg_type(MessageType::Signal)
            .sender("org.freedesktop.DBus")
            .interface("org.freedesktop.DBus")
            .member("NameOwnerChanged")
            .arg(0, SYSTEMD)
            .build();
        self.stream(rule, "AddMatch(NameOwnerChanged)").await
    }

    async fn stream(
        &self,
        rule: zbus::Result<MatchRule<'static>>,
        what: &str,
    ) -> Result<MessageStream, BusError> {
        let call_error = |source| BusError::Call {
            address: self.address.clone(),
            call: what.to_string(),
            source,
        };
        let rule = rule.map_err(call_error)?;
        match tokio::time::timeout(
            self.timeout,
            MessageStream::for_match_rule(rule, &self.conn, None),
        )
        .await
        {
            Ok(stream) => stream.map_err(call_error),
            Err(_) => Err(BusError::Timeout {
                address: self.address.clone(),
                call: what.to_string(),
                timeout: self.timeout,
            }),
        }
    }

    /// The manager's `SystemState` (`running`, `degraded`, …).
    pub async fn system_state(&self) -> Result<String, BusError> {
        let v = self
            .property(SYSTEMD, SYSTEMD_PATH, MANAGER, "SystemState", "Get(SystemState)")
            .await?;
        String::try_from(v).map_err(|e| BusError::Call {
            address: self.address.clone(),
            call: "Get(SystemState)".into(),
            source: e,
        })
    }

    /// Loaded units in one of `states` (any state when empty) whose name
    /// matches one of `patterns` (any name when empty).
    pub async fn units_by_patterns(
        &self,
        states: &[&str],
        patterns: &[String],
    ) -> Result<Vec<UnitInfo>, BusError> {
        let rows: Vec<UnitRow> = self
            .call(
                SYSTEMD,
                SYSTEMD_PATH,
                MANAGER,
                "ListUnitsByPatterns",
                &(states, patterns),
                "ListUnitsByPatterns",
            )
            .await?;
        Ok(rows.into_iter().map(UnitInfo::from).collect())
    }

    /// The units named, loading each (systemd reports `not-found` for a
    /// name it has no unit file for).
    pub async fn units_by_names(&self, names: &[String]) -> Result<Vec<UnitInfo>, BusError> {
        let rows: Vec<UnitRow> = self
            .call(
                SYSTEMD,
                SYSTEMD_PATH,
                MANAGER,
                "ListUnitsByNames",
                &(names,),
                "ListUnitsByNames",
            )
            .await?;
        Ok(rows.into_iter().map(UnitInfo::from).collect())
    }

    /// A service's `NRestarts` (automatic restarts since it was last
    /// started by hand).
    pub async fn n_restarts(&self, unit: &UnitInfo) -> Result<u32, BusError> {
        let what = format!("Get(NRestarts) of {}", unit.name);
        let v = self
            .property(SYSTEMD, &unit.path, SERVICE, "NRestarts", &what)
            .await?;
        u32::try_from(v).map_err(|e| BusError::Call {
            address: self.address.clone(),
            call: what,
            source: e,
        })
    }

    /// `RestartUnit(unit, "replace")`: queues the restart job.
    pub async fn restart_unit(&self, unit: &str) -> Result<(), BusError> {
        let what = format!("RestartUnit({unit})");
        let _job: OwnedObjectPath = self
            .call(
                SYSTEMD,
                SYSTEMD_PATH,
                MANAGER,
                "RestartUnit",
                &(unit, "replace"),
                &what,
            )
            .await?;
        Ok(())
    }

    /// update_engine's `GetStatus`.
    pub async fn update_engine_status(&self) -> Result<UpdateEngineStatus, BusError> {
        let (_last_checked, _progress, operation, new_version, _new_size): (i64, f64, String, String, i64) =
            self.call(
                UPDATE_ENGINE,
                UPDATE_ENGINE_PATH,
                UPDATE_ENGINE_MANAGER,
                "GetStatus",
                &(),
                "update_engine GetStatus",
            )
            .await?;
        Ok(UpdateEngineStatus {
            operation,
            new_version,
        })
    }
}

/// One row of `ListUnits*`: `(ssssssouso)`.
type UnitRow = (
    String,
    String,
    String,
    String,
    String,
    String,
    OwnedObjectPath,
    u32,
    String,
    OwnedObjectPath,
);

impl From<UnitRow> for UnitInfo {
    fn from(row: UnitRow) -> Self {
        let (
            name,
            _description,
            load_state,
            active_state,
            sub_state,
            _following,
            path,
            _job_id,
            _job_type,
            _job_path,
        ) = row;
        UnitInfo {
            name,
            load_state,
            active_state,
            sub_state,
            path: path.to_string(),
            n_restarts: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call_error(source: zbus::Error) -> BusError {
        BusError::Call {
            address: "unix:path=/run/dbus/system_bus_socket".into(),
            call: "Get(NRestarts) of a.service".into(),
            source,
        }
    }

    #[test]
    fn an_error_reply_concerns_the_call_but_io_and_timeouts_concern_the_bus() {
        let too_old = call_error(zbus::Error::FDO(Box::new(zbus::fdo::Error::UnknownProperty(
            "NRestarts".into(),
        ))));
        assert!(too_old.is_answer());
        let io = call_error(zbus::Error::InputOutput(std::sync::Arc::new(
            std::io::Error::from(std::io::ErrorKind::BrokenPipe),
        )));
        assert!(!io.is_answer());
        let slow = BusError::Timeout {
            address: "unix:path=/x".into(),
            call: "ListUnitsByPatterns".into(),
            timeout: Duration::from_secs(5),
        };
        assert!(!slow.is_answer());
        assert!(slow.to_string().contains("unix:path=/x"), "{slow}");
        assert!(too_old.to_string().contains("a.service"), "{too_old}");
    }
}
