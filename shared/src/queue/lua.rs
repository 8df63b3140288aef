//! How a `lua/*.lua` file becomes a [`redis::Script`]: every name it shares with Rust (hash and
//! stream-entry fields, ARGV positions, constants) is written in as a literal when it loads, and
//! the shared preludes (the webhook outbox, the end of a job) are put in front of it.
//!
//! A script refers to
//! - `F.<field>`, `E.<field>`, `H.<field>`, `B.<field>`: the job-hash, stream-entry,
//!   webhook-delivery and batch field names of [`fields`](super::fields), written in as string
//!   literals;
//! - `A.<name>`: the ARGV position of a value every call passes once, and `A.REST`, the
//!   position just after them; `J.<name>`: the offset (from 0) of a value passed once per item
//!   (per job, per entry) after those, and `J.WIDTH`, how many values an item has. The names
//!   and their order are the fields of the script's [`argv!`] structs, which also push the
//!   values, so Rust and Lua cannot disagree on a position;
//! - `C.<name>`: a constant (`C.default_priority`, from [`Priority::DEFAULT`];
//!   `C.default_tenant`, from [`DEFAULT_TENANT`](crate::auth::DEFAULT_TENANT)).
//!
//! Every script starts with Redis 7's `#!lua` header and declares in KEYS every key it
//! touches, all of one partition (one Cluster slot; a Cluster refuses a key outside it).
//!
//! Literals cost nothing per call, where a prelude table would be built on every call. A name
//! this module does not know panics when the script loads: a typo fails the first test that
//! loads the script, never a job at run time.

use redis::Script;

use super::fields::{batch, entry, field, hook};
use crate::job::Priority;

/// The webhook outbox (`outbox.lua`), in front of every script that changes a job's state.
pub(crate) const OUTBOX: &str = include_str!("lua/outbox.lua");

/// The end of a job (`ending.lua`), in front of every script that ends jobs; it calls the
/// outbox, so it comes after [`OUTBOX`].
pub(crate) const ENDING: &str = include_str!("lua/ending.lua");

/// The first line of every script.
const SHEBANG: &str = "#!lua\n";

/// The constant a script names as `C.<name>`, as a Lua literal.
fn constant(name: &str) -> Option<String> {
    match name {
        // ARGV values arrive as strings, so the default priority is compared as one.
        "default_priority" => Some(format!("'{}'", Priority::DEFAULT.level())),
        // Records of the default tenant's jobs name no tenant.
        "default_tenant" => Some(format!("'{}'", crate::auth::DEFAULT_TENANT)),
        "index_field" => Some(format!("'{}'", super::listing::INDEX_FIELD)),
        _ => None,
    }
}

/// The names of a script's ARGV: `head` once per call, then `item` once per item.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Argv {
    pub head: &'static [&'static str],
    pub item: &'static [&'static str],
}

impl Argv {
    /// A script whose ARGV is `head` only (no per-item values).
    pub(crate) const fn head(head: &'static [&'static str]) -> Self {
        Self { head, item: &[] }
    }
}

/// Declares a script's ARGV (or one item's part of it) as a struct: the fields, in order, are
/// the values the script reads; `NAMES` gives the script their names ([`Argv`]) and `push`
/// appends the values to an invocation in that same order. A value a caller forgets to set is
/// a compile error, a value added in the wrong place cannot happen.
macro_rules! argv {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident $(<$lt:lifetime>)? {
            $($(#[$fmeta:meta])* $field:ident: $ty:ty),* $(,)?
        }
    ) => {
        $(#[$meta])*
        $vis struct $name $(<$lt>)? {
            $($(#[$fmeta])* pub(crate) $field: $ty),*
        }

        impl $(<$lt>)? $name $(<$lt>)? {
            /// The fields' names, in ARGV order.
            pub(crate) const NAMES: &'static [&'static str] = &[$(stringify!($field)),*];

            /// Appends the values to `inv`, in ARGV order.
            pub(crate) fn push(&self, inv: &mut redis::ScriptInvocation<'_>) {
                $(inv.arg(&self.$field);)*
            }
        }
    };
}
pub(crate) use argv;

/// A script with `preludes` in front of `body`, its names written in (see the module's header).
pub(crate) fn lua_script_with(preludes: &[&str], body: &str, argv: Argv) -> Script {
    let mut whole = String::with_capacity(preludes.iter().map(|p| p.len() + 1).sum::<usize>());
    // Redis 7's script header: with it (and without `allow-cross-slot-keys`) a Redis Cluster
    // refuses any key of a slot other than the declared keys' one, so a script that strays
    // from its partition fails its first test instead of working on one node only.
    whole.push_str(SHEBANG);
    for p in preludes {
        whole.push_str(p);
        whole.push('\n');
    }
    whole.push_str(body);
    Script::new(&write_names(&whole, argv))
}

/// `text` with every name reference replaced by its literal. Comments (from `--` to the end of
/// the line; no script has `--` inside a string) are left as written, so they may speak of
/// `A.<field>` and the text Redis holds still reads as the file does.
fn write_names(text: &str, argv: Argv) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let (code, comment) = line.split_at(line.find("--").unwrap_or(line.len()));
        write_line(&mut out, code, argv);
        out.push_str(comment);
    }
    out
}

fn write_line(out: &mut String, code: &str, argv: Argv) {
    let mut rest = code;
    while let Some(i) = rest.find(['F', 'E', 'H', 'B', 'A', 'J', 'C']) {
        let (before, at) = rest.split_at(i);
        out.push_str(before);
        let prev = out.chars().last();
        let is_ref =
            at[1..].starts_with('.') && !prev.is_some_and(|c| c.is_alphanumeric() || c == '_');
        if !is_ref {
            out.push_str(&at[..1]);
            rest = &at[1..];
            continue;
        }
        let name_len = at[2..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(at.len() - 2);
        let name = &at[2..2 + name_len];
        let quoted = |v: &str| format!("'{v}'");
        let position = |names: &[&str]| names.iter().position(|n| *n == name);
        let value = match &at[..1] {
            "F" => field::ALL.iter().find(|f| **f == name).map(|v| quoted(v)),
            "H" => hook::ALL.iter().find(|f| **f == name).map(|v| quoted(v)),
            "B" => batch::ALL.iter().find(|f| **f == name).map(|v| quoted(v)),
            "E" => match name {
                "id" => Some(entry::ID),
                "payload" => Some(entry::PAYLOAD),
                "traceparent" => Some(entry::TRACEPARENT),
                "priority" => Some(entry::PRIORITY),
                "fetch_allow" => Some(entry::FETCH_ALLOW),
                _ => None,
            }
            .map(quoted),
            "A" if name == "REST" => Some((argv.head.len() + 1).to_string()),
            "A" => position(argv.head).map(|i| (i + 1).to_string()),
            "J" if name == "WIDTH" && !argv.item.is_empty() => Some(argv.item.len().to_string()),
            "J" => position(argv.item).map(|i| i.to_string()),
            _ => constant(name),
        };
        let value = value
            .unwrap_or_else(|| panic!("Lua script names an unknown name {}", &at[..2 + name_len]));
        out.push_str(&value);
        rest = &at[2 + name_len..];
    }
    out.push_str(rest);
}

#[cfg(test)]
mod tests {
    use super::*;

    argv! {
        struct Call<'a> {
            now: u64,
            group: &'a str,
        }
    }

    argv! {
        struct Item {
            id: u64,
            token: u64,
            status: u64,
        }
    }

    const ARGV: Argv = Argv {
        head: Call::NAMES,
        item: Item::NAMES,
    };

    #[test]
    fn field_names_are_written_out_as_literals() {
        let text = write_names(
            "local a = F.status -- F.status\nlocal b = E.payload .. IF.x\n-- A.<field>\n",
            ARGV,
        );
        assert_eq!(
            text,
            "local a = 'status' -- F.status\nlocal b = 'p' .. IF.x\n-- A.<field>\n"
        );
    }

    #[test]
    fn argv_names_are_written_out_as_positions() {
        let text = write_names(
            "local now, g = ARGV[A.now], ARGV[A.group]\n\
             for b = A.REST, #ARGV, J.WIDTH do f(ARGV[b + J.id], ARGV[b + J.status]) end\n\
             if p ~= C.default_priority then end",
            ARGV,
        );
        assert_eq!(
            text,
            "local now, g = ARGV[1], ARGV[2]\n\
             for b = 3, #ARGV, 3 do f(ARGV[b + 0], ARGV[b + 2]) end\n\
             if p ~= '5' then end"
        );
    }

    #[test]
    fn the_structs_push_their_values() {
        let script = Script::new("return ARGV");
        let mut inv = script.prepare_invoke();
        Call { now: 1, group: "g" }.push(&mut inv);
        Item {
            id: 2,
            token: 3,
            status: 4,
        }
        .push(&mut inv);
    }

    #[test]
    #[should_panic(expected = "unknown name F.nope")]
    fn an_unknown_field_is_refused() {
        write_names("return F.nope", ARGV);
    }

    #[test]
    #[should_panic(expected = "unknown name A.later")]
    fn an_unknown_argument_is_refused() {
        write_names("return ARGV[A.later]", ARGV);
    }
}
