import type { PostgresTables, SqliteDatabase } from './database.js'

// A member's second factor: the TOTP secret (kept on the member's row), the last time step a code was used
// for (so a code is good once), the hashed recovery codes, and a tenant's rule that every member needs one.

export interface TwoFactorStore {
  /**
   * Sets the member's TOTP secret, marks `usedStep` (the step of the code that confirmed it) as used, and
   * replaces the recovery codes, in one transaction; false when the member has a secret already or is gone.
   */
  enableTwoFactor(memberId: string, totpSecret: string, usedStep: number, recoveryDigests: string[]): Promise<boolean>
  /** Forgets the secret and the recovery codes; false when the member had none. */
  disableTwoFactor(memberId: string): Promise<boolean>
  /** Marks the time step used, only when it is later than the last one used: true for the one caller that did. */
  useTotpStep(memberId: string, step: number): Promise<boolean>
  /** Deletes the recovery code: true for the one caller that did. */
  useRecoveryCode(memberId: string, codeDigest: string): Promise<boolean>
  /** Replaces every recovery code of a member who has a secret; false when they have none. */
  replaceRecoveryCodes(memberId: string, recoveryDigests: string[]): Promise<boolean>
  countRecoveryCodes(memberId: string): Promise<number>
  requiresTwoFactor(tenantId: string): Promise<boolean>
  setRequireTwoFactor(tenantId: string, required: boolean): Promise<void>
}

export function sqliteTwoFactor(db: SqliteDatabase): TwoFactorStore {
  const q = {
    enable: db.prepare<[string, number, string]>(
      'UPDATE saiku_members SET totp_secret = ?, totp_last_step = ? WHERE member_id = ? AND totp_secret IS NULL',
    ),
    disable: db.prepare<[string]>(
      'UPDATE saiku_members SET totp_secret = NULL, totp_last_step = NULL WHERE member_id = ? AND totp_secret IS NOT NULL',
    ),
    hasSecret: db.prepare<[string], { one: number }>(
      'SELECT 1 AS one FROM saiku_members WHERE member_id = ? AND totp_secret IS NOT NULL',
    ),
    useStep: db.prepare<[number, string, number]>(
      'UPDATE saiku_members SET totp_last_step = ? WHERE member_id = ? AND totp_secret IS NOT NULL AND (totp_last_step IS NULL OR totp_last_step < ?)',
    ),
    deleteCodes: db.prepare<[string]>('DELETE FROM saiku_recovery_codes WHERE member_id = ?'),
    addCode: db.prepare<[string, string]>('INSERT INTO saiku_recovery_codes (member_id, code_digest) VALUES (?, ?)'),
    useCode: db.prepare<[string, string]>('DELETE FROM saiku_recovery_codes WHERE member_id = ? AND code_digest = ?'),
    countCodes: db.prepare<[string], { n: number }>(
      'SELECT count(*) AS n FROM saiku_recovery_codes WHERE member_id = ?',
    ),
    requires: db.prepare<[string], { require_two_factor: number }>(
      'SELECT require_two_factor FROM saiku_tenant_security WHERE tenant_id = ?',
    ),
    setRequire: db.prepare<[string, number]>(
      `INSERT INTO saiku_tenant_security (tenant_id, require_two_factor) VALUES (?, ?)
       ON CONFLICT (tenant_id) DO UPDATE SET require_two_factor = excluded.require_two_factor`,
    ),
  }
  const replaceCodes = (memberId: string, digests: string[]) => {
    q.deleteCodes.run(memberId)
    for (const digest of new Set(digests)) q.addCode.run(memberId, digest)
  }

  return {
    async enableTwoFactor(memberId, totpSecret, usedStep, recoveryDigests) {
      return db
        .transaction(() => {
          if (q.enable.run(totpSecret, usedStep, memberId).changes === 0) return false
          replaceCodes(memberId, recoveryDigests)
          return true
        })
        .immediate()
    },
    async disableTwoFactor(memberId) {
      return db
        .transaction(() => {
          q.deleteCodes.run(memberId)
          return q.disable.run(memberId).changes > 0
        })
        .immediate()
    },
    async useTotpStep(memberId, step) {
      return q.useStep.run(step, memberId, step).changes > 0
    },
    async useRecoveryCode(memberId, codeDigest) {
      return q.useCode.run(memberId, codeDigest).changes > 0
    },
    async replaceRecoveryCodes(memberId, recoveryDigests) {
      return db
        .transaction(() => {
          if (q.hasSecret.get(memberId) === undefined) return false
          replaceCodes(memberId, recoveryDigests)
          return true
        })
        .immediate()
    },
    async countRecoveryCodes(memberId) {
      return q.countCodes.get(memberId)?.n ?? 0
    },
    async requiresTwoFactor(tenantId) {
      return (q.requires.get(tenantId)?.require_two_factor ?? 0) === 1
    },
    async setRequireTwoFactor(tenantId, required) {
      q.setRequire.run(tenantId, required ? 1 : 0)
    },
  }
}

export function postgresTwoFactor({ tables: t, query, inTransaction }: PostgresTables): TwoFactorStore {
  return {
    enableTwoFactor: (memberId, totpSecret, usedStep, recoveryDigests) =>
      inTransaction(async (run) => {
        const enabled = await run(
          `UPDATE ${t.members} SET totp_secret = $2, totp_last_step = $3 WHERE member_id = $1 AND totp_secret IS NULL`,
          [memberId, totpSecret, usedStep],
        )
        if ((enabled.rowCount ?? 0) === 0) return false
        await run(`DELETE FROM ${t.recoveryCodes} WHERE member_id = $1`, [memberId])
        await run(
          `INSERT INTO ${t.recoveryCodes} (member_id, code_digest) SELECT $1, unnest($2::text[]) ON CONFLICT DO NOTHING`,
          [memberId, recoveryDigests],
        )
        return true
      }),
    disableTwoFactor: (memberId) =>
      inTransaction(async (run) => {
        await run(`DELETE FROM ${t.recoveryCodes} WHERE member_id = $1`, [memberId])
        const result = await run(
          `UPDATE ${t.members} SET totp_secret = NULL, totp_last_step = NULL WHERE member_id = $1 AND totp_secret IS NOT NULL`,
          [memberId],
        )
        return (result.rowCount ?? 0) > 0
      }),
    async useTotpStep(memberId, step) {
      // The row lock serialises two uses of one step; the second sees it used and changes nothing.
      const result = await query(
        `UPDATE ${t.members} SET totp_last_step = $2
          WHERE member_id = $1 AND totp_secret IS NOT NULL AND (totp_last_step IS NULL OR totp_last_step < $2)`,
        [memberId, step],
      )
      return (result.rowCount ?? 0) > 0
    },
    async useRecoveryCode(memberId, codeDigest) {
      const result = await query(`DELETE FROM ${t.recoveryCodes} WHERE member_id = $1 AND code_digest = $2`, [
        memberId,
        codeDigest,
      ])
      return (result.rowCount ?? 0) > 0
    },
    replaceRecoveryCodes: (memberId, recoveryDigests) =>
      inTransaction(async (run) => {
        // Locks the member's row, so a concurrent disable cannot leave codes without a secret.
        const member = await run(
          `SELECT 1 FROM ${t.members} WHERE member_id = $1 AND totp_secret IS NOT NULL FOR UPDATE`,
          [memberId],
        )
        if ((member.rowCount ?? 0) === 0) return false
        await run(`DELETE FROM ${t.recoveryCodes} WHERE member_id = $1`, [memberId])
        await run(
          `INSERT INTO ${t.recoveryCodes} (member_id, code_digest) SELECT $1, unnest($2::text[]) ON CONFLICT DO NOTHING`,
          [memberId, recoveryDigests],
        )
        return true
      }),
    async countRecoveryCodes(memberId) {
      const { rows } = await query<{ n: string }>(`SELECT count(*) AS n FROM ${t.recoveryCodes} WHERE member_id = $1`, [
        memberId,
      ])
      return Number(rows[0]?.n ?? 0)
    },
    async requiresTwoFactor(tenantId) {
      const { rows } = await query<{ require_two_factor: boolean }>(
        `SELECT require_two_factor FROM ${t.tenantSecurity} WHERE tenant_id = $1`,
        [tenantId],
      )
      return rows[0]?.require_two_factor === true
    },
    async setRequireTwoFactor(tenantId, required) {
      await query(
        `INSERT INTO ${t.tenantSecurity} (tenant_id, require_two_factor) VALUES ($1, $2)
         ON CONFLICT (tenant_id) DO UPDATE SET require_two_factor = excluded.require_two_factor`,
        [tenantId, required],
      )
    },
  }
}
