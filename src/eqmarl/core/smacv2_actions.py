"""The SMACv2 mixed action layout: shared by the envs (every backend) and the policy head
(``EnvSpec.action_type == "mixed"``), so neither imports the other."""

# The mixed action (every backend): a float vector [choice, move_x, move_y, target]
#   choice: 0 stop, 1 move, 2 attack; (move_x, move_y): the move vector (continuous:
#   clipped to the unit disk, scaled by the unit's speed; discrete: mapped to the nearest
#   available compass move); target: index of the enemy to attack.
CHOICE_STOP, CHOICE_MOVE, CHOICE_ATTACK = 0, 1, 2
N_CHOICES = 3
# Compass moves in SMAX's order (N, E, S, W), as (dx, dy)
COMPASS = ((0.0, 1.0), (1.0, 0.0), (0.0, -1.0), (-1.0, 0.0))
# Action mask layout ([E, A, MASK_TARGETS + n_enemies] bool): the three choices, the four
# compass moves (all True for alive units with continuous movement), then one per enemy.
MASK_CHOICES = slice(0, 3)
MASK_COMPASS = slice(3, 7)
MASK_TARGETS = 7
