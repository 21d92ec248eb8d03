//! The users domain: parsed values (an email is normalised, a password meets the policy) and
//! the rules about accounts. Pure; the service wires it to storage.

mod account;
mod email;
mod password;
mod throttle;

pub(crate) use account::{
    Account, ChannelPatch, DisplayName, PreferencesPatch, RolesChange, Status, parse_role, role_name,
};
pub(crate) use email::Email;
pub(crate) use password::{PasswordHashing, PasswordPolicy, PasswordRejection};
pub use throttle::{Backoff, ThrottlePolicy};
