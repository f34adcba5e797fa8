"""Chinese names for alert kinds and severities: what an enforcement officer reads on a phone.

An unknown kind (a new agent shipped before this table was updated) still renders, with its
code, so a new alert kind never breaks pushing.
"""

from __future__ import annotations

KIND_NAMES: dict[str, str] = {
    "illegal_dumping": "违规倾倒",
    "uncovered_transport": "未密闭运输",
    "overload": "超载",
    "over_rating": "超载",
    "route_or_hours_violation": "违规路线或时段运输",
    "manifest_mismatch": "电子联单重量不符",
    "manifest_missing": "电子联单未到达",
    "over_capacity": "设施超负荷",
    "raw_waste_landfilled": "原生垃圾填埋",
    "bin_full": "垃圾桶满溢",
    "low_sorting_accuracy": "分类准确率偏低",
    "double_weighing": "重复过磅",
    "unstable_capture": "非稳定称重",
    "tare_deviation": "皮重异常",
    "remote_jump": "遥控作弊嫌疑",
    # raised by stream/agents/integrity.py as weighbridge_<flag>
    "weighbridge_double_weighing": "重复过磅",
    "weighbridge_unstable_capture": "非稳定称重",
    "weighbridge_tare_deviation": "皮重异常",
    "weighbridge_over_rating": "超载",
    "weighbridge_remote_jump": "遥控作弊嫌疑",
    "weighbridge_clock_skew": "地磅时钟偏差",
    "weighbridge_overload": "地磅超量程",
    "weighbridge_motion": "地磅静止时报晃动",
    "weighbridge_net_mode": "仪表净重模式称重",
    "device_offline": "设备离线",
    "stuck_sensor": "传感器卡滞",
    "outbox_growing": "数据积压",
}

SEVERITY_NAMES: dict[str, str] = {"info": "提示", "warning": "警告", "critical": "严重"}

SEVERITY_RANK: dict[str, int] = {"info": 0, "warning": 1, "critical": 2}


def kind_name(kind: str) -> str:
    return KIND_NAMES.get(kind, kind)


def severity_name(severity: str) -> str:
    return SEVERITY_NAMES.get(severity, severity)
