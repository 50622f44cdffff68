//! `sotto chat`: the terminal chat. [`state`] is what the screen shows and how keys change it,
//! [`view`] draws it (both plain code, tested without a terminal); [`mod@run`] connects them to the
//! terminal and the client.

mod run;
mod state;
mod view;

pub(crate) use run::run;
