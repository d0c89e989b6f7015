//! Call event v1 as the engine sees it: decoded, validated and normalised (see `codec` for the
//! wire format). Every enum here is closed; its wire names are the `as_str` values.

use super::time::Ts;
use jiff::tz::TimeZone;

/// The closed enums of call event v1, parsed by wire name (decoder, rule filters).
pub trait ClosedEnum: Sized + Copy {
    /// Parses a wire name; `None` for anything else.
    fn parse_wire(s: &str) -> Option<Self>;
    /// The wire names, for error messages.
    fn wire_names() -> String;
    /// The value's position in declaration order (below 32).
    fn index(self) -> u32;
}

macro_rules! closed_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $var:ident = $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum $name { $($(#[$vm])* $var),+ }
        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$var),+];
            /// The wire name.
            pub fn as_str(self) -> &'static str { match self { $($name::$var => $s),+ } }
            /// Parses a wire name; `None` for anything else.
            pub fn parse(s: &str) -> Option<$name> { match s { $($s => Some($name::$var),)+ _ => None } }
            /// The wire names, for error messages.
            pub fn names() -> String { [$($s),+].join(", ") }
        }
        impl ClosedEnum for $name {
            fn parse_wire(s: &str) -> Option<Self> { $name::parse(s) }
            fn wire_names() -> String { $name::names() }
            fn index(self) -> u32 { self as u32 }
        }
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str(self.as_str()) }
        }
    };
}

closed_enum!(
    /// The callee's relation to the debtor.
    Relation {
        /// The debtor.
        SelfDebtor = "self",
        /// Spouse.
        Spouse = "spouse",
        /// Parent (of a minor debtor).
        Parent = "parent",
        /// Guardian.
        Guardian = "guardian",
        /// Executor or administrator of the estate.
        Executor = "executor",
        /// Guarantor of the debt.
        Guarantor = "guarantor",
        /// Co-maker / co-signer.
        CoMaker = "co_maker",
        /// Emergency contact named by the debtor.
        EmergencyContact = "emergency_contact",
        /// Employer.
        Employer = "employer",
        /// Someone taken from the debtor's contact list.
        ContactList = "contact_list",
        /// Someone else.
        Other = "other",
        /// Not known.
        Unknown = "unknown",
    }
);

closed_enum!(
    /// How the call ended.
    CallOutcome {
        /// Rang, not answered.
        NoAnswer = "no_answer",
        /// Busy signal.
        Busy = "busy",
        /// Failed to connect.
        Failed = "failed",
        /// Number not in service.
        NotInService = "not_in_service",
        /// Reached voicemail.
        Voicemail = "voicemail",
        /// A live conversation.
        Conversation = "conversation",
        /// Reached someone who is not the intended callee.
        WrongNumber = "wrong_number",
        /// Dropped.
        Dropped = "dropped",
    }
);

closed_enum!(
    /// Who placed the call.
    Direction {
        /// Placed by the collector (the default).
        Outbound = "outbound",
        /// Placed by the callee.
        Inbound = "inbound",
    }
);

closed_enum!(
    /// The medium.
    Channel {
        /// A telephone call (the default).
        Voice = "voice",
        /// Ringless voicemail.
        RinglessVoicemail = "ringless_voicemail",
        /// Text message.
        Sms = "sms",
        /// Email.
        Email = "email",
        /// In-app message.
        AppMessage = "app_message",
    }
);

closed_enum!(
    /// Where the dialled number came from.
    NumberSource {
        /// Given by the debtor.
        DebtorProvided = "debtor_provided",
        /// From the loan application.
        Application = "application",
        /// A named emergency contact.
        EmergencyContact = "emergency_contact",
        /// Harvested from the debtor's device contact list.
        DeviceContacts = "device_contacts",
        /// Harvested from the debtor's call log.
        CallLog = "call_log",
        /// Skip tracing.
        SkipTrace = "skip_trace",
        /// Anything else.
        Other = "other",
    }
);

closed_enum!(
    /// Why the call was placed.
    Purpose {
        /// To collect the debt.
        Collect = "collect",
        /// To find the debtor.
        Location = "location",
        /// To ask the callee to relay a message.
        Relay = "relay",
        /// Returning the callee's call.
        ReturnCall = "return_call",
        /// Anything else.
        Other = "other",
    }
);

closed_enum!(
    /// A debtor status (Status v1, `crate::reference`): a fact that makes some calls unlawful
    /// while it is in force.
    StatusKind {
        /// The consumer is represented by an attorney (Reg F §1006.6(b)(2)).
        AttorneyRepresented = "attorney_represented",
        /// The consumer asked in writing that communication cease (§1006.6(c)).
        CeaseCommunication = "cease_communication",
        /// The debt is disputed and verification is pending (§1006.34, FDCPA §809(b)).
        DisputePending = "dispute_pending",
        /// The person opted out of a medium (e.g. text messages, §1006.14(h)).
        MediumOptOut = "medium_opt_out",
        /// The person asked that one number not be called.
        NumberOptOut = "number_opt_out",
        /// A third party asked never to be called again.
        ThirdPartyStop = "third_party_stop",
        /// The person named times that are inconvenient (§1006.6(b)(1)(i)).
        InconvenientTime = "inconvenient_time",
        /// Calls at the workplace are prohibited (§1006.6(b)(3)).
        WorkplaceProhibited = "workplace_prohibited",
        /// The consumer is in bankruptcy (automatic stay).
        Bankruptcy = "bankruptcy",
        /// The consumer is deceased.
        Deceased = "deceased",
        /// Location information was obtained; no further location calls.
        LostContact = "lost_contact",
    }
);

/// The value of 1 to 17 ASCII digits (leading zeros allowed); `None` for anything else.
pub fn digits_value(digits: &str) -> Option<u64> {
    if digits.is_empty() || digits.len() > 17 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(
        digits
            .bytes()
            .fold(0u64, |v, b| v * 10 + u64::from(b - b'0')),
    )
}

/// An E.164 number (`+`, then 1 to 17 digits: E.164's 15, and what some dialers send past it)
/// in 8 bytes, never 0: the digits' value and their count, so one-to-one. `None` for anything
/// else. The phone normaliser's cache and the contact book keep numbers so.
pub fn pack_e164(e164: &str) -> Option<u64> {
    let digits = e164.strip_prefix('+')?;
    Some(digits_value(digits)? << 5 | digits.len() as u64)
}

/// The number [`pack_e164`] packed (0: none).
pub fn unpack_e164(v: u64) -> Option<Text> {
    if v == 0 {
        return None;
    }
    let len = (v & 31) as usize;
    let mut value = v >> 5;
    let mut buf = [b'0'; 18];
    buf[0] = b'+';
    for i in (1..=len).rev() {
        buf[i] = b'0' + (value % 10) as u8;
        value /= 10;
    }
    // Only ASCII digits and `+` were written.
    std::str::from_utf8(&buf[..=len]).ok().map(Text::from)
}

/// A call's text field: inline up to 24 bytes, so decoding the ids, numbers and names dialers
/// send allocates nothing (a `String` each was ten allocations per call, freed on another
/// thread).
pub type Text = compact_str::CompactString;

/// One call attempt, decoded and normalised. Optional fields are `None` when the record lacks
/// them; `direction`, `channel` and `consent` carry their defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// Identity of the attempt; a second record with the same id is a duplicate.
    pub call_id: Text,
    /// Event time.
    pub occurred_at: Ts,
    /// The person whose debt is collected. Empty only in a call a dialer mapping left to the
    /// contact book (`@contact_book`), until the book fills it in ([`Call::wants_debtor`]).
    pub debtor_id: Text,
    /// The dialled number, E.164.
    pub phone: Text,
    /// The callee's relation to the debtor.
    pub relation: Relation,
    /// Producer's record id.
    pub event_id: Option<Text>,
    /// The debt/account.
    pub account_id: Option<Text>,
    /// How the call ended.
    pub outcome: Option<CallOutcome>,
    /// Who placed the call.
    pub direction: Direction,
    /// The medium.
    pub channel: Channel,
    /// Talk/ring time in seconds.
    pub duration_s: Option<f64>,
    /// Who dialled.
    pub agent_id: Option<Text>,
    /// The agency that dialled.
    pub agency_id: Option<Text>,
    /// The creditor collected for.
    pub creditor_id: Option<Text>,
    /// The campaign.
    pub campaign_id: Option<Text>,
    /// The callee's zone, if the dialer knows it.
    pub callee_tz: Option<TimeZone>,
    /// Where the number came from.
    pub number_source: Option<NumberSource>,
    /// Why the call was placed.
    pub purpose: Option<Purpose>,
    /// The callee gave prior direct consent to this call.
    pub consent: bool,
    /// Passed through to alerts.
    pub attrs: Vec<(String, String)>,
    /// The string fields already interned by a decoder thread for the engine that will judge
    /// the call ([`super::Engine::ingest_owned`] takes them); `None` from a plain decode.
    pub interned: Option<super::intern::Interned>,
    /// What the contact book filled in ([`super::Engine::enrich`]); nothing for a call as
    /// decoded. The `contact` rule kind tells the event's own values from the book's by it.
    pub filled: Filled,
}

/// Which of a call's fields the contact book filled in (`engine::contacts`), and the fact it
/// filled them from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Filled {
    /// `debtor_id`: the one debtor whose book holds the number (a mapping's `@contact_book`).
    pub debtor: bool,
    /// `relation` (the event said `unknown`).
    pub relation: bool,
    /// `number_source` (the event had none).
    pub number_source: bool,
    /// The book was asked (the call lacked a field): `fact` is what it said, so a `contact`
    /// rule need not ask again.
    pub looked_up: bool,
    /// The book's fact for the call's debtor and number at its time, when asked.
    pub fact: Option<super::contacts::Fact>,
}

impl Call {
    /// Asks for the lines of the call that judging it and rendering its alerts read (ids,
    /// time, interned symbols, the string fields, `attrs`), without waiting for them. A call
    /// decoded on one thread and judged or rendered on another was written on another core: a
    /// driver calls this some calls (or breaches) before it reads the call (docs/performance.md,
    /// "Prefetching what other cores wrote").
    #[inline]
    pub fn prefetch(&self) {
        use super::prefetch;
        prefetch(&self.call_id);
        prefetch(&self.event_id);
        prefetch(&self.occurred_at);
        prefetch(&self.interned);
        prefetch(&self.debtor_id);
        prefetch(&self.phone);
        prefetch(&self.account_id);
        prefetch(&self.agent_id);
        prefetch(&self.agency_id);
        prefetch(&self.creditor_id);
        prefetch(&self.attrs);
    }

    /// Whether the call's debtor is still to be found in the contact book by its number (its
    /// record's mapping found none elsewhere, and said `@contact_book`): it cannot be judged
    /// until [`super::contacts::Contacts::find_debtor`] fills it in.
    #[inline]
    pub fn wants_debtor(&self) -> bool {
        self.debtor_id.is_empty()
    }

    /// A call with the required fields and every optional field at its default, for tests and
    /// synthetic traffic.
    pub fn new(
        call_id: &str,
        occurred_at: Ts,
        debtor_id: &str,
        phone: &str,
        relation: Relation,
    ) -> Call {
        Call {
            call_id: call_id.into(),
            occurred_at,
            debtor_id: debtor_id.into(),
            phone: phone.into(),
            relation,
            event_id: None,
            account_id: None,
            outcome: None,
            direction: Direction::Outbound,
            channel: Channel::Voice,
            duration_s: None,
            agent_id: None,
            agency_id: None,
            creditor_id: None,
            campaign_id: None,
            callee_tz: None,
            number_source: None,
            purpose: None,
            consent: false,
            attrs: Vec::new(),
            interned: None,
            filled: Filled::default(),
        }
    }

    /// The value of a string field that rules may key on or filter by.
    pub fn str_field(&self, f: StrField) -> Option<&str> {
        match f {
            StrField::DebtorId => Some(&self.debtor_id),
            StrField::Phone => Some(&self.phone),
            StrField::AccountId => self.account_id.as_deref(),
            StrField::AgentId => self.agent_id.as_deref(),
            StrField::AgencyId => self.agency_id.as_deref(),
            StrField::CreditorId => self.creditor_id.as_deref(),
            StrField::CampaignId => self.campaign_id.as_deref(),
            StrField::EventId => self.event_id.as_deref(),
        }
    }
}

closed_enum!(
    /// The string-valued fields of a call that the engine stores interned.
    StrField {
        /// `debtor_id`
        DebtorId = "debtor_id",
        /// `phone`
        Phone = "phone",
        /// `account_id`
        AccountId = "account_id",
        /// `agent_id`
        AgentId = "agent_id",
        /// `agency_id`
        AgencyId = "agency_id",
        /// `creditor_id`
        CreditorId = "creditor_id",
        /// `campaign_id`
        CampaignId = "campaign_id",
        /// `event_id`
        EventId = "event_id",
    }
);

impl StrField {
    /// Fields a rule may name in `key` (DESIGN.md §3).
    pub const KEYABLE: &'static [StrField] = &[
        StrField::DebtorId,
        StrField::AccountId,
        StrField::Phone,
        StrField::AgentId,
        StrField::AgencyId,
        StrField::CreditorId,
    ];
}
