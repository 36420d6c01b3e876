"""DRAM pJ per bit per standard from `energydram` 0.4.0 and DRAMPower's Micron device parameters.

Used by `bench/make_memory_table.py` (the CSV it writes is the data; the runtime never imports this).
`energydram` (M. Gao, PyPI) implements Micron's power notes (TN-41-01 for DDR3, TN-40-07 for DDR4) as
current x voltage x time per command; it carries no device data, so each device's currents (mA),
supply voltages and timings (clock cycles) below are copied unchanged from one DRAMPower memspec
(github.com/tukl-msd/DRAMPower, `memspecs/`), which takes them from the named Micron datasheet.

Rule, per standard: pJ per bit read = energydram's read-burst energy / bits in that burst
+ one activate's energy / bits in one row (a streaming read that opens each row once and reads all of
it); pJ per bit written likewise with the write burst. Background, refresh and off-chip termination
(energydram's CACTI-IO `Termination`) are not included: they depend on time and board, not on the
access. LPDDR4's VDDQ current (IDD4RQ) is the device's output drivers, so LPDDR4 includes its I/O drive.
"""
from __future__ import annotations

from dataclasses import dataclass

ENERGYDRAM_VERSION = "0.4.0"
IDD_FIELDS = ("idd0", "idd2p", "idd2n", "idd3p", "idd3n", "idd4r", "idd4w", "idd5")


@dataclass(frozen=True)
class Device:
    """One DRAM device as energydram needs it, with the memspec it was copied from."""

    kind: str  # dram.<kind> in the memory table
    memspec: str  # DRAMPower memspec file name
    clk_mhz: float
    timing: dict  # energydram.Timing fields, in clock cycles
    domains: tuple  # ((volts, {IDD field: mA}), ...) in energydram's constructor order
    width: int  # DQ bits of the device
    columns: int  # columns per row (one column = `width` bits)
    note: str  # how a memspec field was mapped, where it was not one to one


DEVICES = (
    Device("LPDDR4", "MICRON_6Gb_LPDDR4-3200_32bit_A.json", 1600,
           {"RAS": 68, "RP": 29, "RFC": 448, "REFI": 6246, "RRD": 16},
           ((1.8, dict(idd0=3.5, idd2p=1.2, idd2n=2.0, idd3p=1.2, idd3n=2.25, idd4r=2.25, idd4w=2.25, idd5=10.0)),
            (1.1, dict(idd0=45.0, idd2p=3.0, idd2n=27.0, idd3p=9.0, idd3n=30.0, idd4r=275.0, idd4w=210.0, idd5=90.0)),
            (1.1, dict(idd0=0.75, idd2p=0.75, idd2n=0.75, idd3p=0.75, idd3n=0.75, idd4r=150.0, idd4w=55.0,
                       idd5=0.75))),
           16, 1024, "VDD1/VDD2/VDDQ = memspec idd*/idd*2/idd*q; RP = RPPB; RFC, REFI = RFCAB, REFIAB"),
    Device("DDR4", "MICRON_4Gb_DDR4-2400_8bit_A.json", 1200,
           {"RAS": 39, "RP": 16, "RFC": 313, "REFI": 4680, "RRD": 4},
           ((1.2, dict(idd0=60.75, idd2p=17.0, idd2n=38.25, idd3p=22.5, idd3n=44.0, idd4r=184.5, idd4w=168.75,
                       idd5=118.0)),
            (2.5, dict(idd0=4.05, idd2p=4.05, idd2n=4.05, idd3p=4.05, idd3n=4.05, idd4r=4.05, idd4w=4.05,
                       idd5=4.05))),
           8, 1024, "idd5 = memspec idd5B, RRD = RRD_S; the memspec gives VPP only as ipp0 (and ipp6), so the "
                    "VPP domain carries ipp0 throughout and adds no access energy"),
    Device("DDR3", "MICRON_2Gb_DDR3-1600_16bit_D.json", 800,
           {"RAS": 28, "RP": 10, "RFC": 128, "REFI": 4160, "RRD": 6},
           ((1.5, dict(idd0=110.0, idd2p=40.0, idd2n=42.0, idd3p=45.0, idd3n=45.0, idd4r=270.0, idd4w=280.0,
                       idd5=215.0)),),
           16, 1024, "idd2p, idd3p = memspec idd2p1, idd3p1 (fast-exit power-down)"),
)


def _model(device: Device):
    """The energydram object for one device (DDR: EnergyDDR; LPDDR4: EnergyLPDDR)."""
    import energydram

    if energydram.__version__ != ENERGYDRAM_VERSION:
        raise SystemExit(f"energydram {energydram.__version__} is installed; the table cites "
                         f"{ENERGYDRAM_VERSION}: pip install energydram=={ENERGYDRAM_VERSION}")
    tck = 1000.0 / device.clk_mhz  # ns
    timing = energydram.Timing(**device.timing)
    idds = [(volts, energydram.IDDs(**currents)) for volts, currents in device.domains]
    if device.kind.startswith("LPDDR"):
        (vdd1, i1), (vdd2, i2), (vddq, iq) = idds
        return energydram.EnergyLPDDR(tck, timing, vdd1, i1, vdd2, i2, vddq, iq, 1, ddr=int(device.kind[-1]))
    (vdd, i_dd), *vpp = idds
    extra = {"vpp": vpp[0][0], "ipps": vpp[0][1]} if vpp else {}
    return energydram.EnergyDDR(tck, timing, vdd, i_dd, 1, ddr=int(device.kind[-1]), **extra)


def pj_per_bit(device: Device) -> tuple[float, float]:
    """(read, write) pJ per bit by the module's rule; energydram returns mA x V x ns = pJ."""
    model = _model(device)
    burst_bits = model.vdoms[0].burstcycles * 2 * device.width  # double data rate
    activate = model.activate_energy(1) / (device.columns * device.width)
    return (model.readwrite_energy(1, 0) / burst_bits + activate,
            model.readwrite_energy(0, 1) / burst_bits + activate)


def source(device: Device) -> str:
    """The row's source column: tool, device parameters and rule, without commas."""
    speed = round(2 * device.clk_mhz)
    return (f"energydram {ENERGYDRAM_VERSION} (Micron TN-41-01/TN-40-07 model) with DRAMPower memspec "
            f"{device.memspec}: x{device.width} {speed} MT/s; 100% reads (write_pJ: 100% writes); "
            f"one activate per {device.columns}-column row; no termination/background/refresh")


def dram_rows() -> list[tuple[str, float, float, str]]:
    """(kind, read pJ/bit, write pJ/bit, source) for every device."""
    return [(d.kind, *pj_per_bit(d), source(d)) for d in DEVICES]


def header() -> str:
    """Comment lines stating the devices and mappings, for the memory table's header."""
    lines = [f"#   {d.kind}: {d.memspec} (clock {d.clk_mhz:g} MHz, x{d.width}, {d.columns} columns/row); {d.note}."
             for d in DEVICES]
    return "\n".join(lines) + "\n"
