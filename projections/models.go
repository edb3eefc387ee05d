package projections

import "time"

// Message is a row of messages: one per message, its content emptied when deleted.
type Message struct {
	ID           string `gorm:"primaryKey"`
	RoomID       string
	Seq          int64
	AuthorID     string
	AuthorName   string
	AuthorAvatar *string
	Content      string
	CreatedAt    time.Time
	EditedAt     *time.Time
	EditedBy     *string
	DeletedAt    *time.Time
	DeletedBy    *string
}

// TableName is the contract's table name.
func (Message) TableName() string { return "messages" }

// RoomMember is a row of room_members: one per current member of a room.
type RoomMember struct {
	RoomID     string `gorm:"primaryKey"`
	UserID     string `gorm:"primaryKey"`
	UserName   string
	UserAvatar *string
	JoinedAt   time.Time
}

// TableName is the contract's table name.
func (RoomMember) TableName() string { return "room_members" }

// Room is a row of rooms: the room's last assigned seq.
type Room struct {
	RoomID    string `gorm:"primaryKey"`
	LastSeq   int64
	UpdatedAt time.Time
}

// TableName is the table name.
func (Room) TableName() string { return "rooms" }

// StoredEvent is a row of the events store.
type StoredEvent struct {
	ID             string `gorm:"primaryKey"`
	Position       int64
	Type           string
	Source         string
	Subject        *string
	RoomID         *string
	Seq            *int64
	Data           string
	Fingerprint    string
	OccurredAt     time.Time
	RecordedAt     time.Time
	KafkaPartition *int32
	KafkaOffset    *int64
}

// TableName is the contract's table name.
func (StoredEvent) TableName() string { return "events" }

// DeliveryRow is a row of the deliveries outbox.
type DeliveryRow struct {
	ID           int64 `gorm:"primaryKey"`
	EventID      string
	RoomID       *string
	Seq          *int64
	Channels     TextArray `gorm:"type:text[]"`
	Name         string
	Data         string
	SocketID     *string
	Truncated    bool
	CreatedAt    time.Time
	Attempts     int
	LastError    *string
	DeliveredAt  *time.Time
	ParkedAt     *time.Time
	ParkedReason *string
}

// TableName is the table name.
func (DeliveryRow) TableName() string { return "deliveries" }
