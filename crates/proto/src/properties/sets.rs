//! One [`Properties`] impl per property set of the packet model. Each `set` match lists exactly the
//! ids table 2.4 allows in that packet; `write` emits the same ids.

use super::id::*;
use super::{Properties, Value, put_bin, put_byte, put_four, put_str, put_two, put_users, put_var};
use crate::error::EncodeError;
use crate::packet::{
    AckProperties, AuthProperties, ConnectAckProperties, ConnectProperties, DisconnectProperties,
    PublishProperties, SubscribeProperties, UserProperty, WillProperties,
};
use crate::wire::Sink;

impl Properties for ConnectProperties {
    fn set(&mut self, id: u8, value: Value) -> bool {
        match (id, value) {
            (SESSION_EXPIRY_INTERVAL, Value::FourByte(v)) => self.session_expiry_interval = Some(v),
            (RECEIVE_MAXIMUM, Value::TwoByte(v)) => self.receive_maximum = Some(v),
            (MAXIMUM_PACKET_SIZE, Value::FourByte(v)) => self.maximum_packet_size = Some(v),
            (TOPIC_ALIAS_MAXIMUM, Value::TwoByte(v)) => self.topic_alias_maximum = Some(v),
            (REQUEST_RESPONSE_INFORMATION, Value::Byte(v)) => {
                self.request_response_information = Some(v)
            }
            (REQUEST_PROBLEM_INFORMATION, Value::Byte(v)) => {
                self.request_problem_information = Some(v)
            }
            (USER_PROPERTY, Value::Pair(k, v)) => self.user_properties.push((k, v)),
            (AUTHENTICATION_METHOD, Value::Utf8(v)) => self.authentication_method = Some(v),
            (AUTHENTICATION_DATA, Value::Binary(v)) => self.authentication_data = Some(v),
            _ => return false,
        }
        true
    }

    fn write<S: Sink>(&self, s: &mut S) -> Result<(), EncodeError> {
        put_four(s, SESSION_EXPIRY_INTERVAL, self.session_expiry_interval);
        put_two(s, RECEIVE_MAXIMUM, self.receive_maximum);
        put_four(s, MAXIMUM_PACKET_SIZE, self.maximum_packet_size);
        put_two(s, TOPIC_ALIAS_MAXIMUM, self.topic_alias_maximum);
        put_byte(
            s,
            REQUEST_RESPONSE_INFORMATION,
            self.request_response_information,
        );
        put_byte(
            s,
            REQUEST_PROBLEM_INFORMATION,
            self.request_problem_information,
        );
        put_users(s, &self.user_properties)?;
        put_str(
            s,
            AUTHENTICATION_METHOD,
            self.authentication_method.as_deref(),
        )?;
        put_bin(s, AUTHENTICATION_DATA, self.authentication_data.as_deref())
    }
}

impl Properties for WillProperties {
    fn set(&mut self, id: u8, value: Value) -> bool {
        match (id, value) {
            (WILL_DELAY_INTERVAL, Value::FourByte(v)) => self.will_delay_interval = Some(v),
            (PAYLOAD_FORMAT_INDICATOR, Value::Byte(v)) => self.payload_format_indicator = Some(v),
            (MESSAGE_EXPIRY_INTERVAL, Value::FourByte(v)) => self.message_expiry_interval = Some(v),
            (CONTENT_TYPE, Value::Utf8(v)) => self.content_type = Some(v),
            (RESPONSE_TOPIC, Value::Utf8(v)) => self.response_topic = Some(v),
            (CORRELATION_DATA, Value::Binary(v)) => self.correlation_data = Some(v),
            (USER_PROPERTY, Value::Pair(k, v)) => self.user_properties.push((k, v)),
            _ => return false,
        }
        true
    }

    fn write<S: Sink>(&self, s: &mut S) -> Result<(), EncodeError> {
        put_four(s, WILL_DELAY_INTERVAL, self.will_delay_interval);
        put_byte(s, PAYLOAD_FORMAT_INDICATOR, self.payload_format_indicator);
        put_four(s, MESSAGE_EXPIRY_INTERVAL, self.message_expiry_interval);
        put_str(s, CONTENT_TYPE, self.content_type.as_deref())?;
        put_str(s, RESPONSE_TOPIC, self.response_topic.as_deref())?;
        put_bin(s, CORRELATION_DATA, self.correlation_data.as_deref())?;
        put_users(s, &self.user_properties)
    }
}

impl Properties for ConnectAckProperties {
    fn set(&mut self, id: u8, value: Value) -> bool {
        match (id, value) {
            (SESSION_EXPIRY_INTERVAL, Value::FourByte(v)) => self.session_expiry_interval = Some(v),
            (RECEIVE_MAXIMUM, Value::TwoByte(v)) => self.receive_maximum = Some(v),
            (MAXIMUM_QOS, Value::Byte(v)) => self.maximum_qos = Some(v),
            (RETAIN_AVAILABLE, Value::Byte(v)) => self.retain_available = Some(v),
            (MAXIMUM_PACKET_SIZE, Value::FourByte(v)) => self.maximum_packet_size = Some(v),
            (ASSIGNED_CLIENT_IDENTIFIER, Value::Utf8(v)) => {
                self.assigned_client_identifier = Some(v)
            }
            (TOPIC_ALIAS_MAXIMUM, Value::TwoByte(v)) => self.topic_alias_maximum = Some(v),
            (REASON_STRING, Value::Utf8(v)) => self.reason_string = Some(v),
            (USER_PROPERTY, Value::Pair(k, v)) => self.user_properties.push((k, v)),
            (WILDCARD_SUBSCRIPTION_AVAILABLE, Value::Byte(v)) => {
                self.wildcard_subscription_available = Some(v)
            }
            (SUBSCRIPTION_IDENTIFIER_AVAILABLE, Value::Byte(v)) => {
                self.subscription_identifiers_available = Some(v);
            }
            (SHARED_SUBSCRIPTION_AVAILABLE, Value::Byte(v)) => {
                self.shared_subscription_available = Some(v)
            }
            (SERVER_KEEP_ALIVE, Value::TwoByte(v)) => self.server_keep_alive = Some(v),
            (RESPONSE_INFORMATION, Value::Utf8(v)) => self.response_information = Some(v),
            (SERVER_REFERENCE, Value::Utf8(v)) => self.server_reference = Some(v),
            (AUTHENTICATION_METHOD, Value::Utf8(v)) => self.authentication_method = Some(v),
            (AUTHENTICATION_DATA, Value::Binary(v)) => self.authentication_data = Some(v),
            _ => return false,
        }
        true
    }

    fn write<S: Sink>(&self, s: &mut S) -> Result<(), EncodeError> {
        put_four(s, SESSION_EXPIRY_INTERVAL, self.session_expiry_interval);
        put_two(s, RECEIVE_MAXIMUM, self.receive_maximum);
        put_byte(s, MAXIMUM_QOS, self.maximum_qos);
        put_byte(s, RETAIN_AVAILABLE, self.retain_available);
        put_four(s, MAXIMUM_PACKET_SIZE, self.maximum_packet_size);
        put_str(
            s,
            ASSIGNED_CLIENT_IDENTIFIER,
            self.assigned_client_identifier.as_deref(),
        )?;
        put_two(s, TOPIC_ALIAS_MAXIMUM, self.topic_alias_maximum);
        put_str(s, REASON_STRING, self.reason_string.as_deref())?;
        put_users(s, &self.user_properties)?;
        put_byte(
            s,
            WILDCARD_SUBSCRIPTION_AVAILABLE,
            self.wildcard_subscription_available,
        );
        put_byte(
            s,
            SUBSCRIPTION_IDENTIFIER_AVAILABLE,
            self.subscription_identifiers_available,
        );
        put_byte(
            s,
            SHARED_SUBSCRIPTION_AVAILABLE,
            self.shared_subscription_available,
        );
        put_two(s, SERVER_KEEP_ALIVE, self.server_keep_alive);
        put_str(
            s,
            RESPONSE_INFORMATION,
            self.response_information.as_deref(),
        )?;
        put_str(s, SERVER_REFERENCE, self.server_reference.as_deref())?;
        put_str(
            s,
            AUTHENTICATION_METHOD,
            self.authentication_method.as_deref(),
        )?;
        put_bin(s, AUTHENTICATION_DATA, self.authentication_data.as_deref())
    }
}

impl Properties for PublishProperties {
    const MULTI_SUBSCRIPTION_ID: bool = true;

    fn set(&mut self, id: u8, value: Value) -> bool {
        match (id, value) {
            (PAYLOAD_FORMAT_INDICATOR, Value::Byte(v)) => self.payload_format_indicator = Some(v),
            (MESSAGE_EXPIRY_INTERVAL, Value::FourByte(v)) => self.message_expiry_interval = Some(v),
            (TOPIC_ALIAS, Value::TwoByte(v)) => self.topic_alias = Some(v),
            (RESPONSE_TOPIC, Value::Utf8(v)) => self.response_topic = Some(v),
            (CORRELATION_DATA, Value::Binary(v)) => self.correlation_data = Some(v),
            (USER_PROPERTY, Value::Pair(k, v)) => self.user_properties.push((k, v)),
            (SUBSCRIPTION_IDENTIFIER, Value::VarInt(v)) => self.subscription_identifiers.push(v),
            (CONTENT_TYPE, Value::Utf8(v)) => self.content_type = Some(v),
            _ => return false,
        }
        true
    }

    fn write<S: Sink>(&self, s: &mut S) -> Result<(), EncodeError> {
        put_byte(s, PAYLOAD_FORMAT_INDICATOR, self.payload_format_indicator);
        put_four(s, MESSAGE_EXPIRY_INTERVAL, self.message_expiry_interval);
        put_two(s, TOPIC_ALIAS, self.topic_alias);
        put_str(s, RESPONSE_TOPIC, self.response_topic.as_deref())?;
        put_bin(s, CORRELATION_DATA, self.correlation_data.as_deref())?;
        put_users(s, &self.user_properties)?;
        for &sub_id in &self.subscription_identifiers {
            put_var(s, SUBSCRIPTION_IDENTIFIER, Some(sub_id))?;
        }
        put_str(s, CONTENT_TYPE, self.content_type.as_deref())
    }
}

/// PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK and UNSUBACK all allow exactly these two.
impl Properties for AckProperties {
    fn set(&mut self, id: u8, value: Value) -> bool {
        match (id, value) {
            (REASON_STRING, Value::Utf8(v)) => self.reason_string = Some(v),
            (USER_PROPERTY, Value::Pair(k, v)) => self.user_properties.push((k, v)),
            _ => return false,
        }
        true
    }

    fn write<S: Sink>(&self, s: &mut S) -> Result<(), EncodeError> {
        put_str(s, REASON_STRING, self.reason_string.as_deref())?;
        put_users(s, &self.user_properties)
    }
}

impl Properties for SubscribeProperties {
    fn set(&mut self, id: u8, value: Value) -> bool {
        match (id, value) {
            (SUBSCRIPTION_IDENTIFIER, Value::VarInt(v)) => self.subscription_identifier = Some(v),
            (USER_PROPERTY, Value::Pair(k, v)) => self.user_properties.push((k, v)),
            _ => return false,
        }
        true
    }

    fn write<S: Sink>(&self, s: &mut S) -> Result<(), EncodeError> {
        put_var(s, SUBSCRIPTION_IDENTIFIER, self.subscription_identifier)?;
        put_users(s, &self.user_properties)
    }
}

/// UNSUBSCRIBE allows only user properties (3.10.2.1); the model keeps them as a bare `Vec`.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct UserOnly(pub(crate) Vec<UserProperty>);

impl Properties for UserOnly {
    fn set(&mut self, id: u8, value: Value) -> bool {
        match (id, value) {
            (USER_PROPERTY, Value::Pair(k, v)) => self.0.push((k, v)),
            _ => return false,
        }
        true
    }

    fn write<S: Sink>(&self, s: &mut S) -> Result<(), EncodeError> {
        put_users(s, &self.0)
    }
}

impl Properties for DisconnectProperties {
    fn set(&mut self, id: u8, value: Value) -> bool {
        match (id, value) {
            (SESSION_EXPIRY_INTERVAL, Value::FourByte(v)) => self.session_expiry_interval = Some(v),
            (REASON_STRING, Value::Utf8(v)) => self.reason_string = Some(v),
            (USER_PROPERTY, Value::Pair(k, v)) => self.user_properties.push((k, v)),
            (SERVER_REFERENCE, Value::Utf8(v)) => self.server_reference = Some(v),
            _ => return false,
        }
        true
    }

    fn write<S: Sink>(&self, s: &mut S) -> Result<(), EncodeError> {
        put_four(s, SESSION_EXPIRY_INTERVAL, self.session_expiry_interval);
        put_str(s, REASON_STRING, self.reason_string.as_deref())?;
        put_users(s, &self.user_properties)?;
        put_str(s, SERVER_REFERENCE, self.server_reference.as_deref())
    }
}

impl Properties for AuthProperties {
    fn set(&mut self, id: u8, value: Value) -> bool {
        match (id, value) {
            (AUTHENTICATION_METHOD, Value::Utf8(v)) => self.authentication_method = Some(v),
            (AUTHENTICATION_DATA, Value::Binary(v)) => self.authentication_data = Some(v),
            (REASON_STRING, Value::Utf8(v)) => self.reason_string = Some(v),
            (USER_PROPERTY, Value::Pair(k, v)) => self.user_properties.push((k, v)),
            _ => return false,
        }
        true
    }

    fn write<S: Sink>(&self, s: &mut S) -> Result<(), EncodeError> {
        put_str(
            s,
            AUTHENTICATION_METHOD,
            self.authentication_method.as_deref(),
        )?;
        put_bin(s, AUTHENTICATION_DATA, self.authentication_data.as_deref())?;
        put_str(s, REASON_STRING, self.reason_string.as_deref())?;
        put_users(s, &self.user_properties)
    }
}
