//! Notices (AF §6.2, MR §2.2, §3.5): the notice builder (B-notice), the connect-time notices, the
//! kick and avatar notices (live only), and queued notices appended to a user's notice timeline.

use std::sync::Arc;

use serde_json::{json, Map, Value};

use crate::delivery::frame_of;
use crate::error::Result;
use crate::state::AppState;
use crate::store::timeline::{notice_key, Append, Recipients, KIND_NOTICE};
use crate::store::users::UserRow;
use crate::time;

const CDN: &str = "https://docs-51yrc-com.oss-cn-hangzhou.aliyuncs.com/chat";
pub const KEFU_AVATAR: &str = "https://docs-51yrc-com.oss-cn-hangzhou.aliyuncs.com/chat/kefu.png";
pub const GROUP_ICON: &str = "https://docs-51yrc-com.oss-cn-hangzhou.aliyuncs.com/chat/group.png";

/// `{"data":"<text>","dataType":false,"otherData":null}`
pub fn text_data(text: &str) -> Value {
    json!({"data": text, "dataType": false, "otherData": null})
}

/// B-notice (MR §2.2) for user `u`, with `from_id` also used as `msgidKey`.
pub fn b_notice(
    u: &UserRow,
    from_id: &str,
    from_name: &str,
    from_avatar: &str,
    text: &str,
    redirect: Value,
) -> Value {
    json!({
        "id": uuid::Uuid::new_v4().to_string(),
        "from_avatar": from_avatar,
        "from_name": from_name,
        "from_id": from_id,
        "to_id": u.id,
        "to_name": u.display_name(),
        "to_avatar": u.avatar_str(),
        "chatType": "single",
        "type": "text",
        "data": text_data(text),
        "redirect": redirect,
        "options": {},
        "create_time": time::now_ms(),
        "isremove": 0,
        "group": {},
        "msgidKey": from_id,
    })
}

pub fn frame(notice: &Value) -> Arc<str> {
    Arc::from(frame_of(&notice.to_string(), time::now_ms()))
}

/// The kick (MR §3.3): B-notice with every default.
pub fn kick_frame(u: &UserRow) -> Arc<str> {
    frame(&b_notice(
        u,
        &format!("redirect-forceLogout-{}", u.id),
        "账号异地登录",
        KEFU_AVATAR,
        "你的账号在其他设备登录了，您当前设备会下线",
        Value::Null,
    ))
}

fn nav(url: String) -> Value {
    json!({"url": url, "type": "navigateTo"})
}

/// JavaScript `encodeURIComponent`.
pub fn encode_uri_component(s: &str) -> String {
    const KEEP: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'!')
        .remove(b'~')
        .remove(b'*')
        .remove(b'\'')
        .remove(b'(')
        .remove(b')');
    percent_encoding::utf8_percent_encode(s, KEEP).to_string()
}

/// The connect-time notices of MR §3.5 for user `u` with session role `role`, in order.
pub fn connect_notices(u: &UserRow, role: &str, in_group: bool, has_friend: bool) -> Vec<Value> {
    let id = u.id;
    let n = |kind: &str, name: &str, text: &str, avatar: &str, url: String| {
        b_notice(
            u,
            &format!("redirect-{kind}-{id}"),
            name,
            avatar,
            text,
            nav(url),
        )
    };
    let n1 = || {
        n("groupList", "我的群聊", "可查看我加入的群聊列表", &format!("{CDN}/img/qunliaoNoticeIcon.png"),
          "/pages/applyMyfriend/applyMyfriend?action=grouplist&title=%E6%88%91%E7%9A%84%E7%BE%A4%E8%81%8A%E5%88%97%E8%A1%A8".into())
    };
    let n4 = || {
        n("whoCanChatMe", "聊天消息条数限制", "谁可以和我聊天，可向我发几条消息", &format!("{CDN}/img/whoCanChatMe.png"),
          "/pages/setpageInfo/setpageInfo?action=chatset&title=%E5%92%8C%E6%88%91%E8%81%8A%E5%A4%A9%E8%AE%BE%E7%BD%AE".into())
    };
    let mut out = Vec::new();
    if role == "visitor" {
        if in_group {
            out.push(n1());
        }
        out.push(n4());
        out.push(n(
            "visitorLogin",
            "登录提示",
            "欢迎您，登录可以获取更多功能！",
            KEFU_AVATAR,
            "/pages/loginCenter/loginCenter".into(),
        ));
        return out;
    }
    out.push(n("setPassword", "修改密码", "您可以点击这里，修改密码", &format!("{CDN}/img/setPassword.png"),
        "/pages/setpageInfo/setpageInfo?action=setPassword&title=%E4%BF%AE%E6%94%B9%E5%AF%86%E7%A0%81".into()));
    if in_group {
        out.push(n1());
    }
    if has_friend {
        out.push(n(
            "friendsList",
            "我的通讯录",
            "可查看我的通讯录好友",
            &format!("{CDN}/img/friendList.png"),
            "/pages/friendsList/friendsList".into(),
        ));
    }
    out.push(n(
        "userInfoSet",
        "头像设置",
        "不满意你的头像可以更换",
        u.avatar_str(),
        USERINFO_SET_URL.into(),
    ));
    out.push(n4());
    out.push(n("myQrcode", "我的二维码", "展示给别人加你为好友", &format!("{CDN}/img/myQrcode1.png"),
        format!("/pages/setpageInfo/setpageInfo?action=groupQrcode&title=%E6%88%91%E7%9A%84%E4%BA%8C%E7%BB%B4%E7%A0%81&id={id}&name={}&avatar={}&chatType=single",
            encode_uri_component(u.display_name()), encode_uri_component(u.avatar_str()))));
    out.push(n(
        "search",
        "搜索加好友",
        "搜索账号加好友或聊天",
        &format!("{CDN}/img/search.png"),
        "/pages/search/search".into(),
    ));
    out.push(n("applyAddMeFriendSet", "加我为好友时是否需要我验证", "默认不需要，您可以去设置", &format!("{CDN}/img/applyAddMeFriendSet.png"),
        "/pages/setpageInfo/setpageInfo?action=applyAddMeFriendSet&title=%E7%94%B3%E8%AF%B7%E5%8A%A0%E6%88%91%E4%B8%BA%E5%A5%BD%E5%8F%8B%E8%AE%BE%E7%BD%AE".into()));
    out.push(n("AskAndAnswerSet", "问答设置", "当您不在线时，自动回答客户的常见问题", &format!("{CDN}/img/AskAndAnswerSet.png"),
        "/pages/setpageInfo/setpageInfo?action=AskAndAnswerSet&title=%E9%97%AE%E7%AD%94%E8%AE%BE%E7%BD%AE".into()));
    out
}

const USERINFO_SET_URL: &str = "/pages/setpageInfo/setpageInfo?action=userinfoSet&title=%E8%B4%A6%E5%8F%B7%E4%BF%A1%E6%81%AF%E8%AE%BE%E7%BD%AE&redirectUrl=%2Fpages%2Fxiaoxi%2Fxiaoxi&redirectType=switchTab";

/// The avatar-changed notice (AF API 三十四), live only.
pub fn avatar_notice(u: &UserRow) -> Value {
    let from = format!("redirect-userInfoSet-{}", u.id);
    let mut v = b_notice(
        u,
        &from,
        "头像更换成功",
        u.avatar_str(),
        "不满意你的头像可以继续更换",
        Value::Null,
    );
    v["redirect"] = json!({"url": USERINFO_SET_URL, "type": "navigateTo", "doaction": "avatar"});
    v
}

/// Queue a notice for one user on their notice timeline (durable; delivered live or on replay).
pub async fn notify_user(st: &AppState, to: i64, notice: &Value, history: bool) -> Result<()> {
    let from_id = notice["from_id"].as_i64().unwrap_or(0);
    let msg_id = notice["id"].as_str().unwrap_or_default().to_string();
    st.delivery
        .append(Append {
            conv_key: notice_key(to),
            msg_id,
            kind: KIND_NOTICE,
            chat_type: "single",
            from_id,
            to_id: to,
            history,
            client_msg_id: None,
            create_time: notice["create_time"].as_i64().unwrap_or_else(time::now_ms),
            body: notice.to_string(),
            recipients: Recipients::Users(vec![to]),
            revokes: None,
        })
        .await?;
    Ok(())
}

/// A notice object from ordered fields (the shape of AF §6.2 for friend notices).
pub fn notice(fields: &[(&str, Value)]) -> Value {
    let mut m = Map::new();
    for (k, v) in fields {
        m.insert((*k).to_string(), v.clone());
    }
    Value::Object(m)
}
