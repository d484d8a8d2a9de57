//! Accounts, visitors and authentication (AF §2–§7.1).

use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn register_then_login_answers_the_user_view_with_a_token() {
    let app = spawn_app().await;
    let (id, token, d) = app.register("my01").await;
    assert!(id > 0 && !token.is_empty());
    assert_eq!(d["username"], "my01");
    assert_eq!(d["role"], "user");
    assert!(d.get("password").is_none());
    app.post("/api/regChat", None, json!({"username":"my01","password":"123456"}))
        .await
        .fails(400, "该账号已存在，请换一个账号注册");
}
