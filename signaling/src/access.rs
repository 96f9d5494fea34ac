//! The documented access policy: for every route and method the server answers,
//! which callers may use it and under which condition.
//!
//! Pure data and a pure lookup, no IO. The handlers enforce access themselves; this
//! table is what they must agree with. `tests/authz.rs` calls every route × method ×
//! caller against a running server and compares the answers with [`POLICY`]; a route
//! in the OpenAPI document or the router without a row here, or a row without a
//! route, fails that test. So a new route cannot ship without someone deciding who may
//! call it, and the decision is written here, in one place, where an auditor (DPO,
//! security review) can read it. `docs/security/authorization.md` renders it for humans.
//!
//! What the table says (DESIGN.md "Roles", README's API table, issue 18):
//! - `admin` may do what every staff role may, but is not a participant: it cannot
//!   give or withdraw someone's consent, nor publish media.
//! - `viewer` never reaches a non-public meeting's data, nor recorded content made
//!   while a meeting was non-public; `moderator` reads the archive like a viewer.
//! - a removed participant's join token opens nothing but their own consent: reading
//!   it and withdrawing it (issue 18: removal revokes everything but consent
//!   withdrawal and the participant's own data).
//! - a token that fails verification (expired, signed with another key, `alg: none`,
//!   malformed) counts as no token at all: [`Caller::Anonymous`].

/// Who is calling, as the server sees it after verifying the bearer token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Caller {
    /// No token, or a token that fails verification.
    Anonymous,
    /// Staff token with the `admin` role.
    Admin,
    /// Staff token with the `moderator` role (runs meetings).
    Moderator,
    /// Staff (or OIDC citizen) token with the `viewer` role.
    Viewer,
    /// Staff token with the `archivist` role.
    Archivist,
    /// A current participant's join token for the meeting of the path.
    Participant,
    /// A join token for another meeting than the one of the path.
    OtherParticipant,
    /// A join token of the meeting of the path whose participant was removed.
    RemovedParticipant,
}

impl Caller {
    /// Every caller, in the order the docs list them.
    pub const ALL: [Caller; 8] = [
        Caller::Anonymous,
        Caller::Admin,
        Caller::Moderator,
        Caller::Viewer,
        Caller::Archivist,
        Caller::Participant,
        Caller::OtherParticipant,
        Caller::RemovedParticipant,
    ];

    /// Short name, as in the docs.
    pub fn as_str(self) -> &'static str {
        match self {
            Caller::Anonymous => "anonymous",
            Caller::Admin => "admin",
            Caller::Moderator => "moderator",
            Caller::Viewer => "viewer",
            Caller::Archivist => "archivist",
            Caller::Participant => "participant",
            Caller::OtherParticipant => "participant of another meeting",
            Caller::RemovedParticipant => "removed participant",
        }
    }
}

/// When a grant applies, beyond who the caller is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// Whatever the meeting or recording.
    Always,
    /// The meeting of the path is public now.
    PublicMeeting,
    /// The recording contains no part made while its meeting was non-public (decided
    /// when it was made, whatever the meeting's flag is later).
    PublicContent,
    /// The participant of the path (`{pid}`, or the owner of the WHIP session) is the
    /// caller.
    Own,
    /// As [`Condition::Own`], and the request withdraws consent (both purposes
    /// false): what a removed participant may still do.
    OwnWithdrawal,
}

/// Facts about one request that conditions look at.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Facts {
    /// The meeting of the path is public now.
    pub meeting_public: bool,
    /// The recording of the path has no part made while non-public.
    pub content_public: bool,
    /// The participant of the path is the caller.
    pub own: bool,
    /// The request withdraws consent for every purpose.
    pub withdrawal: bool,
}

impl Condition {
    /// Does the condition hold for `facts`?
    pub fn holds(self, facts: &Facts) -> bool {
        match self {
            Condition::Always => true,
            Condition::PublicMeeting => facts.meeting_public,
            Condition::PublicContent => facts.content_public,
            Condition::Own => facts.own,
            Condition::OwnWithdrawal => facts.own && facts.withdrawal,
        }
    }
}

/// Some callers, under a condition.
#[derive(Debug, Clone, Copy)]
pub struct Grant {
    /// Who.
    pub callers: &'static [Caller],
    /// When.
    pub when: Condition,
}

/// How a refused request is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 401 without a valid token, 403 with one whose caller is not allowed.
    Status,
    /// 404, as for an unknown id: the caller may not learn that it exists.
    Hidden,
}

/// One route and method.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    /// HTTP method, upper case.
    pub method: &'static str,
    /// Route pattern as axum and the OpenAPI document write it (`{id}`; a trailing
    /// `{*path}` matches the rest).
    pub path: &'static str,
    /// In the OpenAPI document (the rest are pages, assets, HLS, health, metrics and
    /// the document itself).
    pub documented: bool,
    /// Who may call it; nobody else.
    pub grants: &'static [Grant],
    /// How everybody else is answered.
    pub refusal: Refusal,
}

impl Rule {
    /// May `caller` make this request, given `facts`?
    pub fn allows(&self, caller: Caller, facts: &Facts) -> bool {
        self.grants
            .iter()
            .any(|g| g.callers.contains(&caller) && g.when.holds(facts))
    }

    /// Does `path` (no query) match this rule's pattern?
    pub fn matches(&self, method: &str, path: &str) -> bool {
        method.eq_ignore_ascii_case(self.method) && path_matches(self.path, path)
    }
}

fn path_matches(pattern: &str, path: &str) -> bool {
    let mut want = pattern.split('/');
    let mut got = path.split('/');
    loop {
        match (want.next(), got.next()) {
            (None, None) => return true,
            (Some(w), Some(g)) if w.starts_with("{*") => {
                return !g.is_empty() || got.next().is_some();
            }
            (Some(w), Some(g)) if w.starts_with('{') && w.ends_with('}') => {
                if g.is_empty() {
                    return false;
                }
            }
            (Some(w), Some(g)) if w == g => {}
            _ => return false,
        }
    }
}

/// The rule for a request, if the policy has one.
pub fn rule_for(method: &str, path: &str) -> Option<&'static Rule> {
    POLICY.iter().find(|r| r.matches(method, path))
}

use Caller::*;
use Condition::*;

const ANYONE: &[Grant] = &[Grant {
    callers: &Caller::ALL,
    when: Always,
}];
const RUNS_MEETINGS: &[Grant] = &[Grant {
    callers: &[Admin, Moderator],
    when: Always,
}];
const KEEPS_ARCHIVE: &[Grant] = &[Grant {
    callers: &[Admin, Archivist],
    when: Always,
}];
const STAFF_OF_MEETINGS: &[Grant] = &[Grant {
    callers: &[Admin, Moderator, Archivist],
    when: Always,
}];
/// Meeting data: the staff who run or archive meetings, and the meeting's own
/// current participants.
const IN_THE_MEETING: &[Grant] = &[Grant {
    callers: &[Admin, Moderator, Archivist, Participant],
    when: Always,
}];
/// Recorded content: archivists always; viewers and moderators (the public archive)
/// only what was made while the meeting was public.
const RECORDED_CONTENT: &[Grant] = &[
    Grant {
        callers: &[Admin, Archivist],
        when: Always,
    },
    Grant {
        callers: &[Moderator, Viewer],
        when: PublicContent,
    },
];
/// A recording's state (no content): moderators see every recording's state, since
/// running a meeting needs it; otherwise as [`RECORDED_CONTENT`].
const RECORDING_STATE: &[Grant] = &[
    Grant {
        callers: &[Admin, Archivist, Moderator],
        when: Always,
    },
    Grant {
        callers: &[Viewer],
        when: PublicContent,
    },
];
/// Operating the service: the cluster's nodes and placements.
const OPERATES: &[Grant] = &[Grant {
    callers: &[Admin],
    when: Always,
}];
/// A participant's own WHIP session, or the moderator running the meeting.
const OWN_SESSION: &[Grant] = &[
    Grant {
        callers: &[Admin, Moderator],
        when: Always,
    },
    Grant {
        callers: &[Participant],
        when: Own,
    },
];

const fn api(method: &'static str, path: &'static str, grants: &'static [Grant]) -> Rule {
    Rule {
        method,
        path,
        documented: true,
        grants,
        refusal: Refusal::Status,
    }
}

const fn page(path: &'static str) -> Rule {
    Rule {
        method: "GET",
        path,
        documented: false,
        grants: ANYONE,
        refusal: Refusal::Status,
    }
}

/// The policy: every route and method the server answers. Order does not matter
/// (patterns do not overlap).
pub const POLICY: &[Rule] = &[
    // Meetings.
    api("POST", "/api/v1/meetings", RUNS_MEETINGS),
    api("GET", "/api/v1/meetings", STAFF_OF_MEETINGS),
    api("GET", "/api/v1/meetings/{id}", IN_THE_MEETING),
    api("POST", "/api/v1/meetings/{id}/end", RUNS_MEETINGS),
    api("PUT", "/api/v1/meetings/{id}/public", RUNS_MEETINGS),
    api("PUT", "/api/v1/meetings/{id}/layout", RUNS_MEETINGS),
    api("POST", "/api/v1/meetings/{id}/chapters", RUNS_MEETINGS),
    api("GET", "/api/v1/meetings/{id}/chapters", IN_THE_MEETING),
    api("GET", "/api/v1/meetings/{id}/events", IN_THE_MEETING),
    // Participants and consent.
    api("POST", "/api/v1/meetings/{id}/participants", RUNS_MEETINGS),
    api("GET", "/api/v1/meetings/{id}/participants", IN_THE_MEETING),
    api(
        "DELETE",
        "/api/v1/meetings/{id}/participants/{pid}",
        &[
            Grant {
                callers: &[Admin, Moderator],
                when: Always,
            },
            Grant {
                callers: &[Participant],
                when: Own,
            },
        ],
    ),
    // A removed participant still reads their own consent: it is their own data.
    api(
        "GET",
        "/api/v1/meetings/{id}/participants/{pid}/consent",
        &[
            Grant {
                callers: &[Admin, Moderator, Archivist, Participant],
                when: Always,
            },
            Grant {
                callers: &[RemovedParticipant],
                when: Own,
            },
        ],
    ),
    // Consent is the person's own: nobody else, admin included, sets it. A removed
    // participant may still withdraw it (an erasure request once recorded).
    api(
        "PUT",
        "/api/v1/meetings/{id}/participants/{pid}/consent",
        &[
            Grant {
                callers: &[Participant],
                when: Own,
            },
            Grant {
                callers: &[RemovedParticipant],
                when: OwnWithdrawal,
            },
        ],
    ),
    // Recordings and streams (running them).
    api("POST", "/api/v1/meetings/{id}/recordings", RUNS_MEETINGS),
    api("GET", "/api/v1/meetings/{id}/recordings", STAFF_OF_MEETINGS),
    api("POST", "/api/v1/recordings/{rid}/stop", RUNS_MEETINGS),
    api("POST", "/api/v1/meetings/{id}/streams", RUNS_MEETINGS),
    api("GET", "/api/v1/meetings/{id}/streams", RUNS_MEETINGS),
    api("GET", "/api/v1/streams/{sid}", RUNS_MEETINGS),
    api("POST", "/api/v1/streams/{sid}/stop", RUNS_MEETINGS),
    // Archive. The listing itself is open to the archive's readers; what it lists is
    // filtered by the same rule as the content (tests/archive.rs checks that).
    api(
        "GET",
        "/api/v1/archive",
        &[Grant {
            callers: &[Admin, Archivist, Moderator, Viewer],
            when: Always,
        }],
    ),
    api("GET", "/api/v1/recordings/{rid}", RECORDING_STATE),
    api("GET", "/api/v1/recordings/{rid}/media", RECORDED_CONTENT),
    api("GET", "/api/v1/recordings/{rid}/poster", RECORDED_CONTENT),
    api("GET", "/api/v1/recordings/{rid}/manifest", RECORDED_CONTENT),
    api("DELETE", "/api/v1/recordings/{rid}", KEEPS_ARCHIVE),
    api("PUT", "/api/v1/meetings/{id}/retention", KEEPS_ARCHIVE),
    api(
        "POST",
        "/api/v1/meetings/{id}/legal-hold/lift",
        KEEPS_ARCHIVE,
    ),
    // Audit.
    api("GET", "/api/v1/audit/verify", KEEPS_ARCHIVE),
    api("GET", "/api/v1/meetings/{id}/ledger", STAFF_OF_MEETINGS),
    // Operations: the media nodes, their load and placements (admin).
    api("GET", "/api/v1/cluster", OPERATES),
    // WHIP ingest: publishing needs the meeting's own join token.
    api(
        "POST",
        "/whip/{meeting_id}",
        &[Grant {
            callers: &[Participant],
            when: Always,
        }],
    ),
    api("PATCH", "/whip/{meeting_id}/{session_id}", OWN_SESSION),
    api("DELETE", "/whip/{meeting_id}/{session_id}", OWN_SESSION),
    // Citizens: what they get for a non-public meeting is "not public at the
    // moment" and the slate, never its content (tests/watch.rs checks the bodies).
    api("GET", "/watch/{meeting_id}/status", ANYONE),
    // Not in the OpenAPI document: pages (everything they do needs a token the page
    // holds), static assets, HLS, operations.
    page("/api/v1/openapi.json"),
    page("/healthz"),
    page("/metrics"),
    page("/live/{meeting_id}/{*path}"),
    page("/watch/{meeting_id}"),
    page("/join/{meeting_id}"),
    page("/console/{meeting_id}"),
    page("/publish/{meeting_id}"),
    page("/archive"),
    page("/auth/callback"),
    page("/assets/whip.js"),
    page("/assets/signin.js"),
    page("/assets/hls.min.js"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_concrete_paths_only_of_their_shape() {
        let r = rule_for("GET", "/api/v1/meetings/abc/participants/def/consent").unwrap();
        assert_eq!(r.path, "/api/v1/meetings/{id}/participants/{pid}/consent");
        assert_eq!(rule_for("get", "/api/v1/meetings").unwrap().method, "GET");
        assert!(rule_for("GET", "/api/v1/meetings/").is_none());
        assert!(rule_for("PATCH", "/api/v1/meetings").is_none());
        assert_eq!(
            rule_for("GET", "/live/m/720p/index.m3u8").unwrap().path,
            "/live/{meeting_id}/{*path}"
        );
        assert!(rule_for("GET", "/live/m/").is_none());
    }

    #[test]
    fn no_two_rules_overlap() {
        for (i, a) in POLICY.iter().enumerate() {
            for b in &POLICY[i + 1..] {
                assert!(
                    !(a.method == b.method && a.path == b.path),
                    "{} {} twice",
                    a.method,
                    a.path
                );
            }
        }
    }

    #[test]
    fn removed_participants_may_only_read_and_withdraw_their_own_consent() {
        let facts = Facts {
            meeting_public: true,
            content_public: true,
            own: true,
            withdrawal: true,
        };
        let open: Vec<_> = POLICY
            .iter()
            // Beyond what anyone may call without a token.
            .filter(|r| r.allows(RemovedParticipant, &facts) && !r.allows(Anonymous, &facts))
            .map(|r| (r.method, r.path))
            .collect();
        assert_eq!(
            open,
            [
                ("GET", "/api/v1/meetings/{id}/participants/{pid}/consent"),
                ("PUT", "/api/v1/meetings/{id}/participants/{pid}/consent")
            ]
        );
        let grant = Facts {
            withdrawal: false,
            ..facts
        };
        assert!(
            !rule_for("PUT", "/api/v1/meetings/m/participants/p/consent")
                .unwrap()
                .allows(RemovedParticipant, &grant)
        );
    }

    #[test]
    fn viewers_never_reach_non_public_content_nor_meeting_data() {
        let facts = Facts {
            meeting_public: false,
            content_public: false,
            own: false,
            withdrawal: false,
        };
        for r in POLICY.iter().filter(|r| r.documented) {
            if r.allows(Viewer, &facts) {
                assert!(
                    r.path == "/api/v1/archive" || r.path == "/watch/{meeting_id}/status",
                    "viewer may call {} {}",
                    r.method,
                    r.path
                );
            }
        }
    }

    #[test]
    fn nobody_but_the_person_sets_consent() {
        let r = rule_for("PUT", "/api/v1/meetings/m/participants/p/consent").unwrap();
        for c in Caller::ALL {
            let facts = Facts {
                own: false,
                withdrawal: true,
                ..Default::default()
            };
            assert!(!r.allows(c, &facts), "{c:?}");
        }
    }
}
