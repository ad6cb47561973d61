"""The console's one message catalogue (English and Chinese).

A plain dictionary rather than gettext/Babel: the console has a few dozen labels in
two languages, shipped inside the package, and the same catalogue is handed to the
page's JavaScript as JSON; a .po/.mo toolchain would add a build step for no gain.
"""

from __future__ import annotations

LANGUAGES = ("en", "zh")

CATALOGUE: dict[str, dict[str, str]] = {
    "title": {"en": "Station console", "zh": "台站监控台"},
    "station": {"en": "Station", "zh": "台站"},
    "broker": {"en": "Broker", "zh": "消息代理"},
    "connected": {"en": "connected", "zh": "已连接"},
    "disconnected": {"en": "disconnected", "zh": "未连接"},
    "alertmanager": {"en": "Alertmanager", "zh": "告警管理器"},
    "delivering": {"en": "delivering", "zh": "投递正常"},
    "failing": {"en": "failing", "zh": "投递失败"},
    "not_configured": {"en": "not configured", "zh": "未配置"},
    "version": {"en": "Version", "zh": "版本"},
    "services": {"en": "Services", "zh": "播出业务"},
    "alerts": {"en": "Active alerts", "zh": "当前告警"},
    "no_alerts": {"en": "No active alerts.", "zh": "无告警。"},
    "severity": {"en": "Severity", "zh": "级别"},
    "alert": {"en": "Alert", "zh": "告警"},
    "target": {"en": "Target", "zh": "对象"},
    "summary": {"en": "Summary", "zh": "摘要"},
    "since": {"en": "Since", "zh": "开始于"},
    "suppressed": {"en": "Suppressed", "zh": "抑制"},
    "runbook": {"en": "Runbook", "zh": "处置手册"},
    "eb_regions": {"en": "Emergency broadcast regions", "zh": "应急广播区域"},
    "region": {"en": "Region", "zh": "区域"},
    "online": {"en": "Online", "zh": "在线"},
    "faulty": {"en": "Faulty", "zh": "故障"},
    "offline": {"en": "Offline", "zh": "离线"},
    "no_eb": {"en": "No emergency-broadcast inventory configured.", "zh": "未配置应急广播终端。"},
    "migrations": {"en": "Migrations", "zh": "频率迁移"},
    "no_migrations": {"en": "No migration configured.", "zh": "未配置迁移。"},
    "move": {"en": "Move", "zh": "迁移"},
    "phase": {"en": "Phase", "zh": "阶段"},
    "recent_outages": {"en": "Recent outages", "zh": "近期停播"},
    "ledger_none": {"en": "No outage ledger configured.", "zh": "未配置停播记录。"},
    "no_outages": {"en": "No outage recorded.", "zh": "无停播记录。"},
    "class": {"en": "Class", "zh": "类别"},
    "start": {"en": "Start", "zh": "开始"},
    "duration": {"en": "Duration", "zh": "时长"},
    "cause": {"en": "Cause", "zh": "原因"},
    "ongoing": {"en": "ongoing", "zh": "持续中"},
    "class_outage": {"en": "Outage", "zh": "停播"},
    "class_degraded": {"en": "Degraded", "zh": "劣播"},
    "class_wrong_programme": {"en": "Wrong programme", "zh": "错播"},
    "class_filler": {"en": "Filler", "zh": "垫播"},
    "live": {"en": "live", "zh": "实时"},
    "stale": {"en": "STALE: no update from the daemon", "zh": "数据过期：守护进程无更新"},
    "for": {"en": "for", "zh": "已持续"},
    "state_on_air": {"en": "On air", "zh": "正常播出"},
    "state_degraded": {"en": "Degraded", "zh": "劣播"},
    "state_outage": {"en": "Outage", "zh": "停播"},
    "state_maintenance": {"en": "Maintenance", "zh": "检修"},
    "state_off_schedule": {"en": "Off schedule", "zh": "非播出时段"},
    "state_no_data": {"en": "No data", "zh": "无数据"},
    "sev_critical": {"en": "critical", "zh": "严重"},
    "sev_warning": {"en": "warning", "zh": "警告"},
    "sev_info": {"en": "info", "zh": "提示"},
    "reason_inhibited": {"en": "inhibited", "zh": "已抑制"},
    "reason_maintenance": {"en": "maintenance", "zh": "检修中"},
    "reason_flapping": {"en": "flapping", "zh": "抖动"},
    "kind_fm": {"en": "FM", "zh": "调频"},
    "kind_dtv": {"en": "DTV", "zh": "地面数字电视"},
    "kind_tx": {"en": "Transmitter", "zh": "发射机"},
    "v_rf_level_dbuv": {"en": "RF", "zh": "射频"},
    "v_modulation_percent": {"en": "Mod", "zh": "调制度"},
    "v_audio_rms_dbfs": {"en": "Audio", "zh": "音频"},
    "v_audio_peak_dbfs": {"en": "Peak", "zh": "峰值"},
    "v_loudness_shortterm_lufs": {"en": "Loudness", "zh": "响度"},
    "v_mer_db": {"en": "MER", "zh": "调制误差比"},
    "v_ber_pre": {"en": "BER", "zh": "误码率"},
    "v_lock": {"en": "Lock", "zh": "锁定"},
    "v_forward_power_w": {"en": "Fwd", "zh": "入射功率"},
    "v_reflected_power_w": {"en": "Refl", "zh": "反射功率"},
    "v_vswr": {"en": "VSWR", "zh": "驻波比"},
    "v_pa_temp_celsius": {"en": "PA temp", "zh": "功放温度"},
    "language": {"en": "中文", "zh": "English"},
}


def messages(lang: str) -> dict[str, str]:
    """Every label in ``lang`` (English for an unknown language)."""
    lang = lang if lang in LANGUAGES else "en"
    return {key: texts[lang] for key, texts in CATALOGUE.items()}


def negotiate(query: str | None, cookie: str | None, accept_language: str | None) -> str:
    """The page's language: ``?lang=``, then the cookie, then Accept-Language, then English."""
    for explicit in (query, cookie):
        if explicit in LANGUAGES:
            return explicit
    best, best_q = "en", -1.0
    for i, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.strip().partition(";")
        primary = tag.strip().lower().split("-")[0]
        if primary not in LANGUAGES:
            continue
        q = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                q = float(params[2:])
            except ValueError:
                continue
        q -= i * 1e-6  # earlier wins a tie
        if q > best_q:
            best, best_q = primary, q
    return best
