//! The generated OpenAPI document at `/api/v1/openapi.json`.

use axum::routing::get;
use axum::{Json, Router};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::api::{
    archive, audit, chapters, cluster, meetings, participants, recordings, streams, watch, whip, ws,
};
use crate::AppState;

#[derive(OpenApi)]
#[openapi(
    info(title = "Gremium API", description = "Control plane of Gremium: meetings, participants, consent, recordings, streams, archive, audit, cluster."),
    paths(
        meetings::create_meeting, meetings::list_meetings, meetings::get_meeting, meetings::end_meeting, meetings::set_public, meetings::set_layout,
        chapters::mark_chapter, chapters::list_chapters,
        participants::add_participant, participants::list_participants, participants::remove_participant,
        participants::get_consent, participants::set_consent,
        recordings::start_recording, recordings::list_recordings, archive::get_recording, recordings::stop_recording,
        archive::list_archive, archive::get_media, archive::get_poster, archive::get_manifest, archive::delete_recording, archive::set_retention,
        archive::lift_legal_hold,
        streams::start_stream, streams::list_streams, streams::get_stream, streams::stop_stream,
        audit::verify, audit::meeting_ledger, ws::events, whip::publish, whip::leave, whip::trickle,
        watch::status, cluster::cluster_status,
    ),
    components(schemas(crate::error::ErrorBody, crate::events::MeetingEvent, crate::events::EventKind, ws::Snapshot, crate::auth::Role,
        gremium_protocol::ClusterStatus, gremium_protocol::NodeStatus, gremium_protocol::NodeInfo)),
    modifiers(&BearerAuth),
)]
pub(crate) struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// The document, for tools that want it without a server.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

pub(crate) fn router() -> Router<AppState> {
    Router::new().route("/openapi.json", get(|| async { Json(document()) }))
}
