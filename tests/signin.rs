//! OIDC sign-in on the staff pages (`/console/{id}`, `/archive`, `/auth/callback`).
//! Over HTTP: what the pages get injected (the client, or nothing without
//! `client_id`, or "unavailable" when discovery fails) and the CSP that lets them reach
//! the token endpoint. In headless Chromium inside a loopback-only network namespace,
//! against a real OpenID provider — node-oidc-provider (panva) with our configuration
//! `tests/fixtures/oidc-provider.mjs`, its built-in login and consent forms, JWT access
//! tokens (RS256) for audience `gremium` with a `roles` claim: a chair signs in from
//! the console (keyboard), acts with the OIDC token (the ledger names the OIDC subject),
//! an expired or refused token leads back to "Sign in", sign-out forgets the token, a
//! citizen without the moderator role is told so, an archivist and a citizen each see
//! what their role may see in the archive, and a callback with a tampered `state` (or
//! one that would send the browser elsewhere) is refused. Accessibility audits with
//! axe-core; screenshots go to `target/test-artifacts/signin-*.png`.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use gremium_signaling::auth::Algorithm;
use gremium_signaling::{ApiSettings, OidcSettings, Role, SignInSettings};
use reqwest::Method;
use serde_json::{json, Value};

const CLIENT_ID: &str = "gremium-pages";

fn oidc_settings(issuer: &str, sign_in: Option<SignInSettings>) -> OidcSettings {
    OidcSettings {
        issuer: issuer.into(),
        audience: "gremium".into(),
        jwks_url: format!("{issuer}/jwks"),
        algorithms: vec![Algorithm::RS256],
        role_claim: "roles".into(),
        role_map: HashMap::from([
            ("moderator".to_string(), Role::Moderator),
            ("archivist".to_string(), Role::Archivist),
            ("admin".to_string(), Role::Admin),
            ("viewer".to_string(), Role::Viewer),
        ]),
        jwks_max_age: Duration::from_secs(3600),
        jwks_min_refresh: Duration::from_millis(0),
        sign_in,
    }
}

fn client(token_endpoint: Option<&str>) -> SignInSettings {
    SignInSettings {
        client_id: CLIENT_ID.into(),
        scopes: "openid profile gremium".into(),
        resource: Some("urn:gremium".into()),
        authorization_endpoint: token_endpoint.map(|_| "https://id.example/auth".into()),
        token_endpoint: token_endpoint.map(str::to_string),
    }
}

/// An app with OIDC sign-in; local staff tokens stay accepted so the test can set up
/// meetings without the provider.
async fn app_with(oidc: OidcSettings) -> TestApp {
    let mut auth = auth_settings(Some(oidc));
    auth.accept_local_staff = true;
    spawn_app_with(Backend::Sqlite, auth, ApiSettings::default()).await
}

/// The JSON the server put into a page.
fn page_config(html: &str) -> Value {
    let start = html
        .find(r#"<script id="page-config" type="application/json">"#)
        .expect("config element")
        + r#"<script id="page-config" type="application/json">"#.len();
    let end = start + html[start..].find("</script>").unwrap();
    serde_json::from_str(&html[start..end]).unwrap()
}

#[tokio::test]
async fn staff_pages_carry_the_sign_in_client_and_may_reach_only_its_token_endpoint() {
    // Endpoints configured: no discovery needed.
    let app = app_with(oidc_settings(
        "https://id.example",
        Some(client(Some("https://id.example:8443/token"))),
    ))
    .await;
    let moderator = app.moderator();
    let mid = moderator.create_meeting("Rat").await.id;
    for path in [
        format!("/console/{mid}"),
        "/archive".into(),
        "/auth/callback?code=x&state=y".into(),
    ] {
        let r = app.http.get(app.url(&path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let csp = r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            csp.contains("connect-src 'self' https://id.example:8443;"),
            "{path}: {csp}"
        );
        assert_eq!(r.headers()["referrer-policy"], "no-referrer");
        let html = r.text().await.unwrap();
        let config = page_config(&html);
        assert_eq!(
            config["sign_in"],
            json!({
                "authorization_endpoint": "https://id.example/auth",
                "token_endpoint": "https://id.example:8443/token",
                "client_id": CLIENT_ID,
                "scopes": "openid profile gremium",
                "resource": "urn:gremium",
                "issuer": "https://id.example",
            }),
            "{path}"
        );
        assert!(html.contains(r#"<script src="/assets/signin.js"></script>"#));
        assert!(!html.contains("src=\"http"), "{path}: no third-party code");
    }
    let js = app
        .http
        .get(app.url("/assets/signin.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        js.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert!(js.text().await.unwrap().contains("code_challenge_method"));

    // OIDC without a client id: the pages keep to local tokens, CSP unchanged.
    let app = app_with(oidc_settings("https://id.example", None)).await;
    let r = app.http.get(app.url("/archive")).send().await.unwrap();
    assert!(r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("connect-src 'self';"));
    let config = page_config(&r.text().await.unwrap());
    assert_eq!(
        config,
        json!({"sign_in": null, "sign_in_unavailable": false})
    );

    // Discovery fails (nothing listens there): the page says sign-in is unavailable.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let issuer = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let app = app_with(oidc_settings(&issuer, Some(client(None)))).await;
    let html = app
        .http
        .get(app.url("/archive"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        page_config(&html),
        json!({"sign_in": null, "sign_in_unavailable": true})
    );
}

/// node-oidc-provider on a loopback port, ended on drop.
struct Provider {
    child: Child,
    issuer: String,
}

impl Provider {
    /// Start `tests/fixtures/oidc-provider.mjs` on `port`, redirecting to `redirect_uri`.
    fn start(port: u16, redirect_uri: &str) -> Provider {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut child = Command::new("node")
            .arg(root.join("tests/fixtures/oidc-provider.mjs"))
            .arg(port.to_string())
            .arg(redirect_uri)
            .arg(root.join("tests/fixtures/test-only-rsa.pem"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node runs (scripts/web.sh installs it)");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).expect("provider output");
        // Keep reading (and echo) what it says: a closed pipe would end it (EPIPE).
        std::thread::spawn(move || {
            for l in stdout.lines().map_while(Result::ok) {
                eprintln!("oidc-provider: {l}");
            }
        });
        assert_eq!(
            line.trim(),
            format!("listening {port}"),
            "node-oidc-provider did not start (run scripts/web.sh's gremium_install_web)"
        );
        Provider {
            child,
            issuer: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free loopback port for the provider (its issuer URL must be known before the
/// app starts, and the app's callback before the provider starts).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An app whose pages sign in at a freshly started provider.
async fn app_and_provider() -> (TestApp, Provider) {
    let port = free_port();
    let issuer = format!("http://127.0.0.1:{port}");
    let app = app_with(oidc_settings(&issuer, Some(client(None)))).await;
    let provider = Provider::start(port, &app.url("/auth/callback"));
    assert_eq!(provider.issuer, issuer);
    (app, provider)
}

const DESCRIBE: &str = "JSON.stringify({href: location.href, \
    state: document.body && document.body.dataset.state, \
    text: document.body && document.body.innerText.slice(0, 400), \
    callback: window.gremiumCallback && window.gremiumCallback.outcome})";

/// On the provider's pages: log in as `login` (any password), then consent if asked,
/// until the browser is back on `base`.
async fn provider_login(b: &mut cdp::Chromium, issuer: &str, base: &str, login: &str) {
    b.wait_for(
        &format!("location.origin === '{issuer}' && !!document.querySelector('input[name=login]')"),
        Duration::from_secs(15),
        DESCRIBE,
    )
    .await;
    b.screenshot(&artifact(&format!("signin-provider-login-{login}.png")))
        .await;
    b.eval(&format!(
        "(() => {{ const f = document.querySelector('input[name=login]').form; \
         f.login.value = '{login}'; f.password.value = 'test'; f.submit(); }})()"
    ))
    .await;
    // Consent (first sign-in of this user; submitted once per consent page), until
    // the callback has sent the browser back to the page it started from.
    b.wait_for(
        &format!(
            "(() => {{ const c = document.querySelector('input[name=prompt][value=consent]'); \
             if (c && !window.consentSent) {{ window.consentSent = true; c.form.submit(); }} \
             return location.origin === '{base}' && !location.pathname.startsWith('/auth/'); }})()"
        ),
        Duration::from_secs(20),
        DESCRIBE,
    )
    .await;
}

/// Click "Sign out" and confirm at the provider's logout page (RP-initiated logout),
/// which sends the browser back through the callback.
async fn sign_out_at_provider(b: &mut cdp::Chromium, issuer: &str) {
    b.eval("document.getElementById('signout').click()").await;
    b.wait_for(
        &format!(
            "location.origin === '{issuer}' && \
             !!document.querySelector('button[name=logout][value=yes]')"
        ),
        Duration::from_secs(15),
        DESCRIBE,
    )
    .await;
    b.eval("document.querySelector('button[name=logout][value=yes]').click()")
        .await;
}

const DESCRIBE_CONSOLE: &str = "JSON.stringify({href: location.href, \
    phase: window.gremiumConsole && gremiumConsole.phase, \
    error: window.gremiumConsole && gremiumConsole.error, \
    message: document.getElementById('message') && document.getElementById('message').textContent})";

#[test]
fn a_chair_signs_in_at_the_provider_and_runs_the_console_in_chromium() {
    netns::run_isolated_async(
        "a_chair_signs_in_at_the_provider_and_runs_the_console_in_chromium",
        Duration::from_secs(120),
        chair_signs_in,
    );
}

async fn chair_signs_in() {
    let (app, provider) = app_and_provider().await;
    let local = app.moderator();
    let mid = local.create_meeting("Stadtrat, 14. Sitzung").await.id;
    local.meeting(&mid).add_participant("Anna").await;
    let base = app.base.clone();

    let mut browser = cdp::Chromium::launch(&app.url(&format!("/console/{mid}"))).await;
    let b = &mut browser;
    b.wait_for(
        "window.gremiumConsole && gremiumConsole.phase === 'sign_in'",
        Duration::from_secs(15),
        DESCRIBE_CONSOLE,
    )
    .await;
    b.eval("document.querySelector('[data-lang=de]').click()")
        .await;
    assert_eq!(
        b.eval(
            "[!document.getElementById('signin').hidden, \
             document.getElementById('signin-button').textContent, \
             document.querySelector('.grid').hidden]"
        )
        .await,
        json!([true, "Anmelden", true])
    );
    b.assert_accessible("console, signed out (de)").await;
    b.screenshot(&artifact("signin-console-signed-out.png"))
        .await;
    b.eval("document.querySelector('[data-lang=en]').click()")
        .await;
    assert_eq!(
        b.eval("document.getElementById('signin-button').textContent")
            .await,
        "Sign in"
    );
    b.assert_accessible("console, signed out (en)").await;

    // Keyboard: focus the button and press Enter.
    b.eval("document.getElementById('signin-button').focus()")
        .await;
    b.press("Enter", 13, Some("\r")).await;
    provider_login(b, &provider.issuer, &base, "chair").await;
    b.wait_for(
        "window.gremiumConsole && gremiumConsole.phase === 'ready'",
        Duration::from_secs(15),
        DESCRIBE_CONSOLE,
    )
    .await;
    assert_eq!(
        b.eval("location.pathname + location.search").await,
        format!("/console/{mid}")
    );
    assert_eq!(b.eval("gremiumConsole.signedIn").await, true);
    assert_eq!(
        b.eval("gremiumConsole.participants.map(p => p.name)").await,
        json!(["Anna"])
    );
    assert_eq!(
        b.eval(
            "[document.getElementById('account').hidden, \
             document.getElementById('account-name').textContent]"
        )
        .await,
        json!([false, "Chair"])
    );
    // The access token is the provider's JWT, kept for this tab only.
    let token = b
        .eval("JSON.parse(sessionStorage.getItem('gremium-oidc-token')).access_token")
        .await;
    let token = token.as_str().expect("an access token").to_string();
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(header.alg, Algorithm::RS256);
    assert_eq!(
        b.eval("sessionStorage.getItem('gremium-oidc-pending')")
            .await,
        Value::Null,
        "the PKCE verifier is gone after use"
    );
    b.assert_accessible("console, signed in").await;
    b.screenshot(&artifact("signin-console-signed-in.png"))
        .await;

    // An action with the OIDC token: the ledger names the provider's subject.
    b.eval("document.getElementById('chapter-title').value = 'TOP 1: Eröffnung'")
        .await;
    b.eval("document.getElementById('chapter-mark').click()")
        .await;
    b.wait_for(
        "gremiumConsole.chapters.includes('TOP 1: Eröffnung')",
        Duration::from_secs(10),
        DESCRIBE_CONSOLE,
    )
    .await;
    let (s, ledger) = local
        .send(Method::GET, &format!("/api/v1/meetings/{mid}/ledger"), None)
        .await;
    assert_eq!(s, 200, "{ledger}");
    let entries = ledger
        .as_array()
        .or_else(|| ledger["entries"].as_array())
        .expect("ledger entries")
        .clone();
    assert!(
        entries
            .iter()
            .any(|e| e["kind"] == "chapter_marked" && e["actor"] == "chair"),
        "{ledger}"
    );
    // The server accepts the same token directly.
    let (s, _) = app
        .send(
            Method::GET,
            &format!("/api/v1/meetings/{mid}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(s, 200);

    // Expired (by its recorded expiry): the page offers sign-in instead of failing.
    b.eval(
        "(() => { const t = JSON.parse(sessionStorage.getItem('gremium-oidc-token')); \
         t.expires_at = Date.now() - 1000; \
         sessionStorage.setItem('gremium-oidc-token', JSON.stringify(t)); location.reload(); })()",
    )
    .await;
    b.wait_for(
        "window.gremiumConsole && gremiumConsole.phase === 'sign_in'",
        Duration::from_secs(15),
        DESCRIBE_CONSOLE,
    )
    .await;
    // Refused by the server (here: not a valid token at all): "expired, sign in again".
    b.eval(
        "sessionStorage.setItem('gremium-oidc-token', JSON.stringify({access_token: 'x.y.z', \
         expires_at: Date.now() + 600000})); location.reload()",
    )
    .await;
    b.wait_for(
        "window.gremiumConsole && gremiumConsole.phase === 'expired' && \
         !document.getElementById('signin').hidden",
        Duration::from_secs(15),
        DESCRIBE_CONSOLE,
    )
    .await;
    assert_eq!(
        b.eval("document.getElementById('message').textContent")
            .await,
        "Your sign-in has expired. Please sign in again."
    );
    assert_eq!(
        b.eval("sessionStorage.getItem('gremium-oidc-token')").await,
        Value::Null
    );

    // Signing in again while the provider still has a session: no form, straight back.
    b.eval("document.getElementById('signin-button').click()")
        .await;
    b.wait_for(
        "window.gremiumConsole && gremiumConsole.phase === 'ready'",
        Duration::from_secs(15),
        DESCRIBE_CONSOLE,
    )
    .await;
    // Sign out: the token is gone, the provider's session ends too (after its
    // confirmation), and the page asks to sign in.
    sign_out_at_provider(b, &provider.issuer).await;
    b.wait_for(
        &format!(
            "location.href === '{base}/console/{mid}' && \
             window.gremiumConsole && gremiumConsole.phase === 'sign_in'"
        ),
        Duration::from_secs(15),
        DESCRIBE_CONSOLE,
    )
    .await;
    assert_eq!(
        b.eval("sessionStorage.getItem('gremium-oidc-token')").await,
        Value::Null
    );

    // A citizen (no role at the provider) is told the console needs the chair role;
    // the provider asks for a login again, as the chair signed out there.
    b.eval("document.getElementById('signin-button').click()")
        .await;
    provider_login(b, &provider.issuer, &base, "buerger").await;
    b.wait_for(
        "window.gremiumConsole && gremiumConsole.phase === 'forbidden'",
        Duration::from_secs(15),
        DESCRIBE_CONSOLE,
    )
    .await;
    assert_eq!(
        b.eval("document.getElementById('message').textContent")
            .await,
        "No access: your account does not have the chair role (moderator)."
    );
    assert_eq!(b.eval("document.querySelector('.grid').hidden").await, true);
    b.assert_accessible("console, signed in without the role")
        .await;
    b.screenshot(&artifact("signin-console-forbidden.png"))
        .await;

    // A callback whose state does not match the pending sign-in is refused before
    // any code is redeemed.
    b.eval(
        "sessionStorage.removeItem('gremium-oidc-token'); \
         sessionStorage.setItem('gremium-oidc-pending', JSON.stringify({state: 'the-real-state', \
         nonce: 'n', verifier: 'v', return_to: '/archive'}))",
    )
    .await;
    b.call(
        "Page.navigate",
        json!({"url": app.url("/auth/callback?code=stolen&state=tampered")}),
    )
    .await;
    b.wait_for(
        "!!window.gremiumCallback",
        Duration::from_secs(10),
        DESCRIBE,
    )
    .await;
    assert_eq!(
        b.eval("[gremiumCallback.outcome.reason, document.body.dataset.state, location.search]")
            .await,
        json!(["state", "failed", ""])
    );
    assert_eq!(
        b.eval("sessionStorage.getItem('gremium-oidc-token')").await,
        Value::Null
    );
    assert!(b
        .eval("document.getElementById('message').textContent")
        .await
        .as_str()
        .unwrap()
        .contains("(state)"));
    b.assert_accessible("callback, refused").await;
    b.screenshot(&artifact("signin-callback-refused.png")).await;

    // A pending sign-in that would return elsewhere (only same-origin paths count):
    // the way back is our archive, never another site.
    b.eval(
        "sessionStorage.setItem('gremium-oidc-pending', JSON.stringify({state: 's1', \
         nonce: 'n', verifier: 'v', return_to: '//evil.example/x'}))",
    )
    .await;
    b.call(
        "Page.navigate",
        json!({"url": app.url("/auth/callback?code=bogus&state=s1")}),
    )
    .await;
    b.wait_for(
        "!!window.gremiumCallback",
        Duration::from_secs(10),
        DESCRIBE,
    )
    .await;
    assert_eq!(
        b.eval(
            "[gremiumCallback.outcome.reason, gremiumCallback.outcome.returnTo, \
             document.getElementById('back').getAttribute('href')]"
        )
        .await,
        json!(["exchange", "/archive", "/archive"])
    );
    for path in [
        "//evil.example",
        "https://evil.example/",
        "/\\evil.example",
        "/console/x?y=1",
    ] {
        let safe = b
            .eval(&format!(
                "gremiumSignIn.safeReturn({})",
                serde_json::to_string(path).unwrap()
            ))
            .await;
        let expected = if path.starts_with("/console") {
            json!(path)
        } else {
            Value::Null
        };
        assert_eq!(safe, expected, "{path}");
    }
    drop(provider);
}

const DESCRIBE_ARCHIVE: &str = "JSON.stringify({href: location.href, \
    phase: window.gremiumArchive && gremiumArchive.phase, \
    error: window.gremiumArchive && gremiumArchive.error, \
    items: window.gremiumArchive && gremiumArchive.items, \
    message: document.getElementById('message') && document.getElementById('message').textContent})";

#[test]
fn an_archivist_and_a_citizen_sign_in_to_the_archive_in_chromium() {
    netns::run_isolated_async(
        "an_archivist_and_a_citizen_sign_in_to_the_archive_in_chromium",
        Duration::from_secs(120),
        archive_sign_in,
    );
}

/// A meeting with one finished recording (the fake media plane makes no file).
async fn recorded(caller: &Client, title: &str, public: bool) {
    caller
        .create_meeting_with(json!({"title": title, "public": public}))
        .await
        .start_recording()
        .await
        .stop()
        .await;
}

async fn archive_sign_in() {
    let (app, provider) = app_and_provider().await;
    let local = app.admin();
    recorded(&local, "Öffentliche Ratssitzung", true).await;
    recorded(&local, "Personalausschuss (nicht-öffentlich)", false).await;
    let base = app.base.clone();

    let mut browser = cdp::Chromium::launch(&app.url("/archive")).await;
    let b = &mut browser;
    b.wait_for(
        "window.gremiumArchive && gremiumArchive.phase === 'sign_in'",
        Duration::from_secs(15),
        DESCRIBE_ARCHIVE,
    )
    .await;
    assert_eq!(
        b.eval("document.getElementById('search').hidden").await,
        true
    );
    b.assert_accessible("archive, signed out").await;
    b.screenshot(&artifact("signin-archive-signed-out.png"))
        .await;

    // The archivist sees non-public meetings too.
    b.eval("document.getElementById('signin-button').focus()")
        .await;
    b.press("Enter", 13, Some("\r")).await;
    provider_login(b, &provider.issuer, &base, "archivar").await;
    b.wait_for(
        "window.gremiumArchive && gremiumArchive.phase === 'ready' && \
         gremiumArchive.items.length === 2",
        Duration::from_secs(15),
        DESCRIBE_ARCHIVE,
    )
    .await;
    assert_eq!(b.eval("location.pathname").await, "/archive");
    assert_eq!(
        b.eval("[gremiumArchive.archivist, gremiumArchive.signedIn]")
            .await,
        json!([true, true])
    );
    b.assert_accessible("archive, archivist signed in").await;
    b.screenshot(&artifact("signin-archive-archivist.png"))
        .await;

    // Sign out; a citizen (viewer) sees only the public meeting.
    sign_out_at_provider(b, &provider.issuer).await;
    b.wait_for(
        "window.gremiumArchive && gremiumArchive.phase === 'sign_in'",
        Duration::from_secs(15),
        DESCRIBE_ARCHIVE,
    )
    .await;
    b.eval("document.getElementById('signin-button').click()")
        .await;
    provider_login(b, &provider.issuer, &base, "buerger").await;
    b.wait_for(
        "window.gremiumArchive && gremiumArchive.phase === 'ready' && \
         gremiumArchive.items.length === 1",
        Duration::from_secs(15),
        DESCRIBE_ARCHIVE,
    )
    .await;
    assert_eq!(
        b.eval("[gremiumArchive.archivist, gremiumArchive.items[0].title]")
            .await,
        json!([false, "Öffentliche Ratssitzung"])
    );
    drop(provider);
}
