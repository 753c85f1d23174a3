/// One versioned schema change. Migrations are embedded in the binary (no files to ship) and applied in order by
/// `Migrator`; an applied migration is never edited (its checksum is recorded and checked), only followed by a new one.
public struct Migration: Sendable {
    public let version: Int
    public let name: String
    public let sql: String

    public init(version: Int, name: String, sql: String) {
        self.version = version
        self.name = name
        self.sql = sql
    }
}

extension Migration {
    /// Every migration, oldest first.
    public static let all: [Migration] = [initialSchema, behaviourScan, workflows, broadcasts, deliveryContactKey, broadcastDeliveryRange, batchRecipients,
                                          leanDeliveryIndexes, hotWorkflowRows]
}
