"""API keys, cost per reply, budget ledgers (issue 12)

Revision ID: 0012a
Revises: 0014a
Create Date: 2026-11-30 00:50:00

Additive: existing token_usage rows get cost 0 (their prices were never recorded) and no key.
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = '0012a'
down_revision: str | None = '0014a'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('api_keys',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('user_id', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('prefix', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('key_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('scopes', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.Column('expires_at', sa.BigInteger(), nullable=True),
    sa.Column('revoked_at', sa.BigInteger(), nullable=True),
    sa.Column('last_used_at', sa.BigInteger(), nullable=True),
    sa.Column('budget_micros', sa.BigInteger(), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('key_hash')
    )
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.create_index('ix_api_keys_user_created', ['user_id', 'created_at'], unique=False)

    op.create_table('budget_ledgers',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
    sa.Column('user_id', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('spent_micros', sa.BigInteger(), nullable=False),
    sa.Column('reserved_micros', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('budget_ledgers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_budget_ledgers_user_id'), ['user_id'], unique=False)

    op.create_table('budget_reservations',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('user_id', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('month_ledger', sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
    sa.Column('key_ledger', sqlmodel.sql.sqltypes.AutoString(length=80), nullable=True),
    sa.Column('amount_micros', sa.BigInteger(), nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('budget_reservations', schema=None) as batch_op:
        batch_op.create_index('ix_budget_reservations_user_created', ['user_id', 'created_at'],
                              unique=False)

    with op.batch_alter_table('token_usage', schema=None) as batch_op:
        batch_op.add_column(sa.Column('cost_micros', sa.BigInteger(), server_default='0',
                                      nullable=False))
        batch_op.add_column(sa.Column('api_key_id', sqlmodel.sql.sqltypes.AutoString(length=40),
                                      nullable=True))
        batch_op.create_foreign_key('fk_token_usage_api_key_id', 'api_keys', ['api_key_id'],
                                    ['id'], ondelete='SET NULL')


def downgrade() -> None:
    with op.batch_alter_table('token_usage', schema=None) as batch_op:
        batch_op.drop_constraint('fk_token_usage_api_key_id', type_='foreignkey')
        batch_op.drop_column('api_key_id')
        batch_op.drop_column('cost_micros')
    with op.batch_alter_table('budget_reservations', schema=None) as batch_op:
        batch_op.drop_index('ix_budget_reservations_user_created')
    op.drop_table('budget_reservations')
    with op.batch_alter_table('budget_ledgers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_budget_ledgers_user_id'))
    op.drop_table('budget_ledgers')
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.drop_index('ix_api_keys_user_created')
    op.drop_table('api_keys')
