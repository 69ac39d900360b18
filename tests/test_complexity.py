import math

import pytest

from keras_igc import complexity

# Reference: widest G at the per-layer budget of RegConv-W16 (3x3, 16 -> 16
# channels: 2304 weights), section 1 of the project reference.
PAPER_WIDEST = {
    1: (43.7, 43.7),
    2: (52.2, 26.1),
    3: (52.0, 17.3),
    4: (48.0, 12),
    8: (30.4, 3.8),
    16: (15.9, 1.0),
}


def test_regular_conv_budget_of_width_16():
    assert complexity.regular_conv_params(16) == 2304


@pytest.mark.parametrize("M", sorted(PAPER_WIDEST))
def test_widest_width_per_m_matches_the_reference_table(M):
    G, L = PAPER_WIDEST[M]
    width = complexity.igc_width_for_budget(2304, M)
    assert width == pytest.approx(G, abs=0.05)
    assert width / M == pytest.approx(L, abs=0.05)
    # At that width the count is exactly the budget.
    L_real = width / M
    assert L_real * M * M * 9 + M * L_real * L_real == pytest.approx(2304)


@pytest.mark.parametrize("budget", [500, 2304, 9216, 36864])
@pytest.mark.parametrize("M", [1, 2, 3, 4, 8])
def test_widest_partitions_stay_within_budget_and_are_widest(budget, M):
    try:
        L, M_out = complexity.widest_igc_partitions(budget, M)
    except ValueError:
        assert complexity.igc_params(1, M) > budget
        return
    assert M_out == M
    assert complexity.igc_params(L, M) <= budget < complexity.igc_params(L + 1, M)


def test_budget_below_the_smallest_block_is_an_error():
    with pytest.raises(ValueError, match="budget of 10 weights is too small"):
        complexity.widest_igc_partitions(10, 4)


def test_igc_formula_identities():
    for L, M in [(24, 2), (4, 8), (1, 16), (16, 1)]:
        G, S = L * M, 9
        assert complexity.igc_params(L, M) == L * M * M * S + M * L * L
        assert complexity.igc_params(L, M) == pytest.approx(G * G * (S / L + 1 / M))
        # IGC is wider than a regular conv of equal parameters iff L/(L-1) < M*S
        # (never for L = 1, where L/(L-1) is infinite).
        C = math.sqrt(complexity.igc_params(L, M) / S)
        assert (G > C + 1e-9) == (L > 1 and L / (L - 1) < M * S)


def test_global_widest_width_is_reached_at_m_s_equal_l():
    budget = 2304
    best = max(
        complexity.igc_width_for_budget(budget, M)
        for M in [x / 100 for x in range(50, 800)]
    )
    assert complexity.max_igc_width(budget) == pytest.approx(best, rel=1e-3)


def test_macs_are_weights_times_output_positions():
    assert complexity.igc_macs(24, 2, 32) == complexity.igc_params(24, 2) * 1024
    assert complexity.regular_conv_macs(16, (8, 4)) == 2304 * 32
    assert (
        complexity.igc_macs(4, 8, 16, input_channels=16) == (9 * 4 * 32 + 8 * 16) * 256
    )


def test_input_width_must_split():
    with pytest.raises(ValueError, match="input_channels=10.*primary_partitions=4"):
        complexity.igc_params(4, 2, input_channels=10)
