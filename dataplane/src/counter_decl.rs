//! One declaration per counter. A counter struct is written once, through
//! [`counter_set!`], with each field's help text, metric family, kind and
//! label; the exit summary, `--json`, `/metrics` and `vipgate stats` all
//! read the generated [`CounterDef`] list instead of naming fields again.
//!
//! The structs stay plain `u64` fields, so the hot path keeps writing
//! `self.counters.forwarded += 1` with nothing in between.

/// Prometheus metric kind of a declared value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Only grows (reset only by a restart).
    Counter,
    /// A level that goes up and down.
    Gauge,
}

/// When the exit summary of `vipgate run` shows a field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Show {
    Always,
    /// Only when it is not zero (losses that usually do not happen).
    Nonzero,
    /// With the handoff rows: several workers, or any handoff at all.
    Handoff,
}

/// What one counter field is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CounterDef {
    /// The field name: its key in `--json` and in `vipgate stats`.
    pub key: &'static str,
    /// Prometheus metric family. Counters carry no `_total` here: the
    /// exposition format appends it.
    pub metric: &'static str,
    /// The label that tells this field apart within its family, if any.
    pub label: Option<(&'static str, &'static str)>,
    pub kind: Kind,
    /// The field's doc comment.
    pub help: &'static str,
    /// Its row in the exit summary (label, when shown), if it has one.
    pub summary: Option<(&'static str, Show)>,
}

impl CounterDef {
    /// The help text on one line, without the doc comment's leading spaces.
    pub fn help_line(&self) -> String {
        self.help.split_whitespace().collect::<Vec<_>>().join(" ")
    }
}

/// Declares a struct of `u64` counters with their descriptions.
///
/// ```ignore
/// counter_set! {
///     /// What a thing did.
///     #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
///     pub struct Thing {
///         /// Frames seen.
///         packets: Counter "vipgate_rx_packets",
///         /// Forwarded frames (a row of the exit summary).
///         forwarded: Counter "vipgate_packets" [verdict = "forwarded"] => "forwarded",
///     }
///     extra {
///         /// Fields that are not plain counters.
///         pub dropped: [u64; 4],
///     }
/// }
/// ```
///
/// `=> "label"` gives a field a row in `vipgate run`'s exit summary
/// (`=> "label" if Nonzero` / `if Handoff`: only then).
/// Generates `DEFS` (one [`CounterDef`] per `u64` field, in order),
/// `SCALARS` (their count), `scalars()` / `set_scalars()` (the fields as
/// an array, for publication), and `add_scalars()` / `sub_scalars()`.
#[macro_export]
macro_rules! counter_set {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $(
                $(#[doc = $doc:literal])+
                $field:ident : $kind:ident $metric:literal $([$lk:ident = $lv:literal])?
                    $(=> $slabel:literal $(if $sshow:ident)?)?,
            )+
        }
        $(extra {
            $( $(#[$xmeta:meta])* pub $xfield:ident : $xty:ty, )*
        })?
    ) => {
        $(#[$meta])*
        pub struct $name {
            $( $(#[doc = $doc])+ pub $field: u64, )+
            $( $( $(#[$xmeta])* pub $xfield: $xty, )* )?
        }

        impl $name {
            /// Every `u64` field's description, in declaration order.
            pub const DEFS: &'static [$crate::counter_decl::CounterDef] = &[
                $( $crate::counter_decl::CounterDef {
                    key: stringify!($field),
                    metric: $metric,
                    label: $crate::counter_set!(@label $($lk $lv)?),
                    kind: $crate::counter_decl::Kind::$kind,
                    help: concat!($($doc, "\n"),+),
                    summary: $crate::counter_set!(@summary $($slabel $($sshow)?)?),
                }, )+
            ];
            /// How many `u64` fields [`Self::DEFS`] describes.
            pub const SCALARS: usize = Self::DEFS.len();

            /// The `u64` fields in [`Self::DEFS`] order.
            #[inline]
            pub fn scalars(&self) -> [u64; Self::SCALARS] {
                [ $( self.$field ),+ ]
            }

            /// Sets the `u64` fields from `v` (in [`Self::DEFS`] order).
            #[inline]
            pub fn set_scalars(&mut self, v: &[u64; Self::SCALARS]) {
                let mut it = v.iter();
                $( self.$field = *it.next().unwrap_or(&0); )+
            }

            /// Adds another block's `u64` fields to this one's.
            pub fn add_scalars(&mut self, o: &Self) {
                $( self.$field += o.$field; )+
            }

            /// This block's `u64` fields minus `earlier`'s (a copy taken
            /// then); saturating, so a block that restarted reads 0.
            pub fn sub_scalars(&mut self, earlier: &Self) {
                $( self.$field = self.$field.saturating_sub(earlier.$field); )+
            }
        }
    };
    (@label) => { None };
    (@summary) => { None };
    (@summary $l:literal) => { Some(($l, $crate::counter_decl::Show::Always)) };
    (@summary $l:literal $s:ident) => { Some(($l, $crate::counter_decl::Show::$s)) };
    (@label $lk:ident $lv:literal) => { Some((stringify!($lk), $lv)) };
}

#[cfg(test)]
mod tests {
    use super::*;

    counter_set! {
        /// A test block.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct Sample {
            /// Frames
            /// seen.
            seen: Counter "t_seen",
            /// Sent on.
            sent: Counter "t_frames" [verdict = "sent"] => "sent on",
            /// Held now.
            held: Gauge "t_held" => "  held" if Nonzero,
        }
        extra {
            /// Not a plain counter.
            pub other: [u64; 2],
        }
    }

    #[test]
    fn defs_follow_the_declaration() {
        assert_eq!(Sample::SCALARS, 3);
        let d = Sample::DEFS;
        assert_eq!(d[0].key, "seen");
        assert_eq!(d[0].help_line(), "Frames seen.");
        assert_eq!(d[0].label, None);
        assert_eq!(d[1].metric, "t_frames");
        assert_eq!(d[1].label, Some(("verdict", "sent")));
        assert_eq!(d[2].kind, Kind::Gauge);
        assert_eq!(d[0].summary, None);
        assert_eq!(d[1].summary, Some(("sent on", Show::Always)));
        assert_eq!(d[2].summary, Some(("  held", Show::Nonzero)));
    }

    #[test]
    fn scalars_round_trip_add_and_subtract() {
        let a = Sample {
            seen: 5,
            sent: 3,
            held: 1,
            other: [9, 9],
        };
        assert_eq!(a.scalars(), [5, 3, 1]);
        let mut b = Sample::default();
        b.set_scalars(&[7, 4, 2]);
        assert_eq!((b.seen, b.sent, b.held, b.other), (7, 4, 2, [0, 0]));
        b.add_scalars(&a);
        assert_eq!(b.scalars(), [12, 7, 3]);
        b.sub_scalars(&Sample { seen: 20, ..a });
        assert_eq!(b.scalars(), [0, 4, 2]);
    }
}
