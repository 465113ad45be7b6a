//! Configuration: `PHOTO_PACS_*` environment defaults, runtime settings in an INI file, validation.

mod env;
mod settings;
mod store;

pub use env::{Backend, EnvConfig, EnvError, Environment, OWN_VARS, PREFIX, RESTORED_ENV};
pub use settings::{
    AuthMethod, Charset, FieldError, InvalidValue, Iod, Key, MIN_NEW_PIN, Secret, Settings,
    TransferSyntax, parse_update,
};
// The image's time helper judges its request by the same rules as a settings change.
pub use settings::{parse_ntp_servers, parse_time_zone};
pub use store::{
    AdminGuard, SettingsStore, UpdateError, admin_hash_path, parse_settings_file, write_atomically,
    write_atomically_with_mode,
};
