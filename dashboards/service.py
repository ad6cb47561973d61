"""Service detail: every measurement of the selected targets, FM, DTV and transmitter rows,
with the alerts as annotations."""

from __future__ import annotations

from grafana_foundation_sdk.models import dashboard as dm

from dashboards.common import (
    FLAG_BAD,
    FLAG_OK,
    ST,
    Board,
    active_alerts,
    datasource_var,
    fixed_thresholds,
    q,
    rule_thresholds,
    scheme_var,
    service_var,
    silence_thresholds,
    station_var,
    target_var,
    timeline,
    ts,
    value_map,
)

UID = "anbo-service-detail"
SEL = f'{ST}, service=~"$service", target=~"$target"'


def reading(kind: str, name: str, stream: str = "rf") -> str:
    return f'anbo_reading{{{SEL}, kind="{kind}", stream="{stream}", name="{name}"}}'


def measurement(kind: str, name: str) -> str:
    return f'anbo_{name}{{{SEL}, kind="{kind}"}}'


def build() -> dm.Dashboard:
    b = Board(
        UID,
        "anbo / Service detail",
        "Every measurement of the selected services: FM (RF, modulation, MPX, pilot, RDS, audio, "
        "loudness), DTV (level, MER, BER, C/N, lock) and transmitters (power, VSWR, temperature).",
        [datasource_var(), station_var(), service_var(), target_var(), scheme_var()],
        time_from="now-3h",
    )
    b.annotation(
        "anbo alerts",
        f'max by (alertname, target, severity) (anbo_alert_active{{{ST}, target=~"$target"}})',
        "red",
    )
    active_alerts(b, f'{ST}, target=~"$target"', w=24, h=6)

    b.row("FM")
    b.add(
        ts(
            "FM RF level",
            "RF level at the off-air receiver; the CarrierLoss floor is drawn.",
            "suffix: dBµV",
            [q(reading("fm", "rf_level_dbuv"), "{{target}}")],
            rule_thresholds("rf_level_dbuv", kind="fm", alerts=("CarrierLoss",)),
        ),
        8,
    )
    b.add(
        ts(
            "Modulation",
            "FM modulation, 100 % = ±75 kHz peak deviation; Overmodulation's limit is drawn.",
            "percent",
            [q(measurement("fm", "modulation_percent"), "{{target}}")],
            rule_thresholds("modulation_percent", kind="fm"),
        ),
        8,
    )
    b.add(
        ts(
            "Peak deviation",
            "Peak deviation as measured by the receiver (±75 kHz = 100 %).",
            "suffix: kHz",
            [q(reading("fm", "peak_deviation_khz"), "{{target}}")],
            fixed_thresholds((None, "green")),
        ),
        8,
    )
    b.add(
        ts(
            "MPX power",
            "MPX power against the ITU-R BS.412 limit of 0 dBr (MpxPowerHigh).",
            "suffix: dBr",
            [q(reading("fm", "mpx_power_dbr"), "{{target}}")],
            rule_thresholds("mpx_power_dbr", kind="fm"),
        ),
        8,
    )
    b.add(
        timeline(
            "Stereo pilot",
            "19 kHz stereo pilot present (PilotLoss when it is not, on a stereo service).",
            [q(reading("fm", "pilot_present"), "{{target}}")],
            FLAG_OK,
        ),
        8,
    )
    b.add(
        ts(
            "Pilot deviation",
            "Deviation of the 19 kHz pilot (nominal 6.75 kHz).",
            "suffix: kHz",
            [q(reading("fm", "pilot_deviation_khz"), "{{target}}")],
            fixed_thresholds((None, "green")),
        ),
        8,
    )
    b.add(
        timeline(
            "RDS PI",
            "RDS programme identification received (RdsPiMismatch when it is not the expected code).",
            [q(f'anbo_reading_info{{{SEL}, kind="fm", name="rds_pi"}}', "{{target}}: {{value}}")],
            value_map({"1": ("received", "green")}),
        ),
        8,
    )
    b.row("Audio")
    b.add(
        ts(
            "Audio level",
            "RMS and peak of the loudest channel; the silence on/off levels of [probes] are drawn.",
            "suffix: dBFS",
            [
                q(f"anbo_audio_rms_dbfs{{{SEL}}}", "{{target}} RMS"),
                q(f"anbo_audio_peak_dbfs{{{SEL}}}", "{{target}} peak"),
            ],
            silence_thresholds(),
        ),
        8,
    )
    b.add(
        ts(
            "Left / right",
            "Left minus right level (dB) and the channels' correlation; AudioPhaseReversal's limit is drawn.",
            "none",
            [
                q(f"anbo_lr_imbalance_db{{{SEL}}}", "{{target}} L−R dB"),
                q(f"anbo_lr_correlation{{{SEL}}}", "{{target}} correlation"),
            ],
            rule_thresholds("lr_correlation"),
        ),
        8,
    )
    b.add(
        ts(
            "Loudness",
            "EBU R128 momentary (400 ms), short-term (3 s) and integrated loudness.",
            "suffix: LUFS",
            [
                q(f"anbo_loudness_momentary_lufs{{{SEL}}}", "{{target}} M"),
                q(f"anbo_loudness_shortterm_lufs{{{SEL}}}", "{{target}} S"),
                q(f"anbo_loudness_integrated_lufs{{{SEL}}}", "{{target}} I"),
            ],
            fixed_thresholds((None, "blue")),
        ),
        8,
    )
    b.add(
        timeline(
            "Silence, hiss, stuck tone",
            "The audio detectors (DeadAir, Hiss, StuckTone fire on them after their hold times).",
            [
                q(f"anbo_silence{{{SEL}}}", "{{target}} silence"),
                q(f"anbo_hiss{{{SEL}}}", "{{target}} hiss"),
                q(f"anbo_stuck_tone{{{SEL}}}", "{{target}} stuck tone"),
            ],
            FLAG_BAD,
        ),
        12,
    )
    b.add(
        ts(
            "Clipping",
            "Share of samples at full scale; AudioClipping's limit is drawn.",
            "percentunit",
            [q(f"anbo_clip_ratio{{{SEL}}}", "{{target}}")],
            rule_thresholds("clip_ratio"),
        ),
        12,
    )

    b.row("DTV")
    b.add(
        ts(
            "DTV RF level",
            "RF level at the DTMB receiver; the CarrierLoss floor is drawn.",
            "suffix: dBµV",
            [q(reading("dtv", "rf_level_dbuv"), "{{target}}")],
            rule_thresholds("rf_level_dbuv", kind="dtv", alerts=("CarrierLoss",)),
        ),
        8,
    )
    b.add(
        ts(
            "MER",
            "Modulation error ratio (a transmitter delivers ≥ 32 dB); MerLow's warning and critical levels.",
            "dB",
            [q(reading("dtv", "mer_db"), "{{target}}")],
            rule_thresholds("mer_db", kind="dtv"),
        ),
        8,
    )
    b.add(
        ts(
            "C/N",
            "Carrier-to-noise ratio; CnLow's warning and critical levels.",
            "dB",
            [q(reading("dtv", "cn_db"), "{{target}}")],
            rule_thresholds("cn_db", kind="dtv"),
        ),
        8,
    )
    b.add(
        ts(
            "BER before FEC",
            "Bit error ratio before FEC; BerHigh's warning level.",
            "sci",
            [q(reading("dtv", "ber_pre"), "{{target}}")],
            rule_thresholds("ber_pre", kind="dtv"),
        ),
        8,
    )
    b.add(
        ts(
            "BER after FEC",
            "Bit error ratio after FEC; BerHigh's critical level.",
            "sci",
            [q(reading("dtv", "ber_post"), "{{target}}")],
            rule_thresholds("ber_post", kind="dtv"),
        ),
        8,
    )
    b.add(
        timeline(
            "DTMB lock",
            "Receiver locked to the multiplex (DtvLockLoss when not, with the carrier present).",
            [q(reading("dtv", "lock"), "{{target}}")],
            FLAG_OK,
        ),
        8,
    )

    b.row("Transmitter")
    b.add(
        ts(
            "Forward / reflected power",
            "Forward and reflected power reported by the transmitter controller.",
            "watt",
            [
                q(reading("tx", "forward_power_w", "status"), "{{target}} forward"),
                q(reading("tx", "reflected_power_w", "status"), "{{target}} reflected"),
            ],
            fixed_thresholds((None, "green")),
        ),
        8,
    )
    b.add(
        ts(
            "VSWR",
            "Voltage standing wave ratio from forward and reflected power; VswrHigh's levels.",
            "none",
            [q(measurement("tx", "vswr"), "{{target}}")],
            rule_thresholds("vswr", kind="tx"),
        ),
        8,
    )
    b.add(
        ts(
            "PA temperature",
            "Power-amplifier temperature; PaOverTemperature's default limit is drawn.",
            "celsius",
            [q(reading("tx", "pa_temp_celsius", "status"), "{{target}}")],
            rule_thresholds("pa_temp_celsius", kind="tx"),
        ),
        8,
    )
    return b.build()
