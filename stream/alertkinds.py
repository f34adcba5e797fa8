"""Every alert kind the stream raises, one entry each: the one place a new kind is added.

Why one registry: a kind used to live in up to 13 files (the agent, Chinese names, push
templates, the dashboards, the example alert config...) that nothing checked against each
other. Now `make_alert` refuses a kind that is not here (a half-added kind fails its agent's
test), the alert service takes its Chinese and English names and push sentence from here, the
dashboards generate their alert panels from `dashboard`, and tests/unit/test_alert_kinds.py
checks this table against the dashboards, the rules and stream/alerting/alerts.example.yaml.

Layer: above the contract only (stream workers, the alert service and the dashboards import it).
"""

from __future__ import annotations

from dataclasses import dataclass

from contract.events import Severity

TRUCKS, FACILITIES, SORTING, DEVICES = "ws-trucks", "ws-facilities", "ws-sorting", "ws-devices"
"""Dashboard uids (dashboards/*.py `UID`): each kind is shown in its dashboard's alert panel."""


@dataclass(frozen=True)
class AlertKind:
    """One kind: what officers read (Chinese first), how severe, where it is shown, what tunes it.

    `template` is the Chinese 概要 sentence built from structured fields only ({subject}: the
    plate, device, station/bin or facility the agent names; {site}; {device}). `rules` are the
    city rules parameters (stream/rules.py `Rules` attribute paths) that decide when it is raised.
    """

    code: str
    name_zh: str
    name_en: str
    severity: Severity
    dashboard: str
    template: str
    rules: tuple[str, ...] = ()


KINDS: tuple[AlertKind, ...] = (
    AlertKind("illegal_dumping", "违规倾倒", "Illegal dumping", Severity.CRITICAL, TRUCKS,
              "渣土车{subject}在核准消纳场所以外卸载（车厢举升或载重骤降），疑似违规倾倒",
              ("transport.load_drop_kg", "disposal_sites")),
    AlertKind("uncovered_transport", "未密闭运输", "Uncovered transport", Severity.WARNING, TRUCKS,
              "车辆{subject}行驶中车厢顶盖打开，未密闭运输",
              ("transport.moving_kmh", "transport.uncovered_min_s")),
    AlertKind("route_or_hours_violation", "违规路线或时段运输", "Route or hours violation", Severity.WARNING,
              TRUCKS, "车辆{subject}偏离核准路线或在禁行时段行驶",
              ("trucks", "corridors", "transport.corridor_tolerance_m")),
    AlertKind("stuck_sensor", "传感器卡滞", "Stuck sensor", Severity.WARNING, DEVICES,
              "车辆{subject}行驶中GPS位置持续不变，定位设备疑似卡滞或被遮挡",
              ("device_health.stuck_after_readings", "transport.moving_kmh")),
    AlertKind("manifest_mismatch", "电子联单重量不符", "Manifest mismatch", Severity.WARNING, TRUCKS,
              "车辆{subject}到达{site}的重量与电子联单出场重量不符，超出允许误差",
              ("manifest.tolerance_pct",)),
    AlertKind("manifest_missing", "电子联单未到达", "Manifest missing", Severity.CRITICAL, TRUCKS,
              "车辆{subject}自{site}出场后未在规定时间内到达消纳设施，电子联单未闭合",
              ("manifest.timeout_s",)),
    AlertKind("over_capacity", "设施超负荷", "Over capacity", Severity.WARNING, FACILITIES,
              "设施{subject}当日进场量超过设计处理能力", ("facilities",)),
    AlertKind("raw_waste_landfilled", "原生垃圾填埋", "Raw waste landfilled", Severity.CRITICAL, FACILITIES,
              "车辆{subject}将原生生活垃圾运入{site}，原生垃圾不得直接填埋", ("raw_household_categories",)),
    AlertKind("bin_full", "垃圾桶满溢", "Bin full", Severity.WARNING, SORTING,
              "投放点{subject}的垃圾桶已满，请安排清运", ("sorting.bin_full_pct",)),
    AlertKind("low_sorting_accuracy", "分类准确率偏低", "Low sorting accuracy", Severity.WARNING, SORTING,
              "投放点{subject}当日分类准确率低于要求",
              ("sorting.low_accuracy_pct", "sorting.min_deposits_for_accuracy")),
    AlertKind("device_offline", "设备离线", "Device offline", Severity.WARNING, DEVICES,
              "站点{site}的设备{subject}离线，数据中断", ("device_health.offline_after_s",)),
    AlertKind("outbox_growing", "数据积压", "Outbox growing", Severity.WARNING, DEVICES,
              "站点{site}的边缘网关数据积压，未能及时上传", ("device_health.outbox_growing_depth",)),
    # weighbridge_<flag>: one per contract WeighingFlag (stream/agents/integrity.py)
    AlertKind("weighbridge_double_weighing", "重复过磅", "Weighbridge double weighing", Severity.WARNING,
              FACILITIES, "车辆{subject}在{site}地磅{device}短时间内重复过磅"),
    AlertKind("weighbridge_unstable_capture", "非稳定称重", "Weighbridge unstable capture", Severity.WARNING,
              FACILITIES, "车辆{subject}在{site}地磅{device}上重量未稳定即取数"),
    AlertKind("weighbridge_tare_deviation", "皮重异常", "Weighbridge tare deviation", Severity.WARNING,
              FACILITIES, "车辆{subject}在{site}地磅{device}的皮重与备案皮重偏差过大"),
    AlertKind("weighbridge_over_rating", "超载", "Weighbridge over rating", Severity.CRITICAL,
              FACILITIES, "车辆{subject}在{site}地磅{device}的毛重超过车辆核定载质量"),
    AlertKind("weighbridge_remote_jump", "遥控作弊嫌疑", "Weighbridge remote jump", Severity.WARNING,
              FACILITIES, "车辆{subject}在{site}地磅{device}的重量异常跳变，疑似遥控作弊"),
    AlertKind("weighbridge_clock_skew", "地磅时钟偏差", "Weighbridge clock skew", Severity.WARNING,
              FACILITIES, "{site}地磅{subject}的称重仪表时钟偏差过大"),
    AlertKind("weighbridge_overload", "地磅超量程", "Weighbridge overload", Severity.WARNING,
              FACILITIES, "车辆{subject}在{site}地磅{device}称重超出仪表量程，毛重仅为下限"),
    AlertKind("weighbridge_motion", "地磅静止时报晃动", "Weighbridge motion", Severity.WARNING,
              FACILITIES, "{site}地磅{device}在重量静止时仍持续报告晃动（车辆{subject}）"),
    AlertKind("weighbridge_net_mode", "仪表净重模式称重", "Weighbridge net mode", Severity.INFO,  # a note
              FACILITIES, "车辆{subject}在{site}地磅{device}以仪表净重模式称重（用仪表皮重，非备案皮重）"),
    AlertKind("weighbridge_unregistered_vehicle", "未备案车辆过磅", "Weighbridge unregistered vehicle",
              Severity.WARNING, FACILITIES,
              "车辆{subject}在{site}地磅{device}过磅，车牌未识别或未备案（品类、皮重未知）"),
    AlertKind("weighbridge_pass_expired", "二次过磅超时", "Weighbridge pass expired", Severity.WARNING,
              FACILITIES, "车辆{subject}在{site}地磅{device}进场称重后未按时出场回皮，净重未计"),
)

REGISTRY: dict[str, AlertKind] = {k.code: k for k in KINDS}


class UnknownAlertKind(KeyError):
    """An agent raised a kind that is not in KINDS: add its entry here."""


def get(code: str) -> AlertKind:
    """The registered kind; UnknownAlertKind (loudly, in the raising agent's tests) otherwise."""
    try:
        return REGISTRY[code]
    except KeyError:
        raise UnknownAlertKind(f"alert kind {code!r} is not registered in stream/alertkinds.py") from None


def on_dashboard(uid: str) -> tuple[str, ...]:
    """The codes shown on dashboard `uid`, in registry order."""
    return tuple(k.code for k in KINDS if k.dashboard == uid)
